"""FitBench: Mixtral 8x7B or Llama 2 70B on this machine? Plan, measure, recommend, report."""

__version__ = "0.1.0"
