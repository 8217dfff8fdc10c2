"""The offline demo's face parser: facexlib's BiSeNet trained on procedural faces, whose label
maps are exact (pipeline.data.procedural), so that the whole pipeline runs and means something
without FFHQ or the pretrained parser weights (workflow/demo/config.yaml)."""
