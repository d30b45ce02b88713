"""Datasets over the manifests: the tokenized training set, and video-level splits."""
