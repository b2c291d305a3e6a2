"""Everything around the model: training/ (the engine behind train.py), evaluation/ (metrics and the inference loop
eval.py and validation share), augmentations (the data pipeline), checkpoint/inference/export (the public inference
API), cli (conventions the scripts share)."""
