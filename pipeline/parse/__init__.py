"""Face parsing: images to 19-class label maps with facexlib's pretrained BiSeNet.

`weights` finds and verifies the weights, `parser` runs the model on any list of images (the
parsing stage and, later, the re-segmentation of synthesised faces), `preview` draws a grid.
"""
