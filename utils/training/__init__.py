"""The training engine behind train.py: data order and seeding (data), checkpoint state and atomic saves (state),
processes and devices (runtime), the loss log and plots (log, visdom_plot) and the learning-rate schedule (schedule)."""
