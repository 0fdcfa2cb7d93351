"""Metric kernels: numpy/scipy computations on label maps that conventions share."""
