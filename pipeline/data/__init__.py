"""Data stage: find or download the face images, subsample them and split them into train/test.

`python -m pipeline.data` writes results/data/split.csv with columns image_id,split,path.
"""
