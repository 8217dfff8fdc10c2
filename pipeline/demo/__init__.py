"""The offline demo: procedural faces with exact label maps (faces), and a BiSeNet face parser
trained on them (parser), so that the whole pipeline runs and means something without FFHQ or
the pretrained parser weights (workflow/demo/config.yaml)."""
