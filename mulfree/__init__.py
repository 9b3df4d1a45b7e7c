"""mulfree: multiplier-free FPGA accelerators for quantized neural networks."""

__version__ = "0.1.0"
