"""The training engine behind train.py: the loop and its step (engine), data order and seeding (data), checkpoint
state and atomic saves (state), which flags a resume keeps (resume), processes and devices (runtime), logs and plots
(log, visdom_plot, tensorboard_log, hooks), validation during training (validation) and the learning-rate schedule
(schedule)."""
