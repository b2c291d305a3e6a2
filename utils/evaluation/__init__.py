"""Detection metrics shared by eval.py, validation during training and the tests: the VOC devkit AP (voc), COCO AP
through pycocotools (coco), and the loop that runs a model over a dataset's pictures (runner)."""
