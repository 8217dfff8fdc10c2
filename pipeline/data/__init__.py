"""Data stage: find or download the face images, subsample them and split them into train/test.

The sources: ffhq (download and verify), folder (images already on disk) and procedural (drawn
faces with exact label maps). `python -m pipeline.data` writes results/data/split.csv with columns
image_id,split,path.
"""
