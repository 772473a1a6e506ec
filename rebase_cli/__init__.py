"""rebase: REward BAlanced SEarch (arXiv 2408.00724) as a command-line toolkit."""

__version__ = "0.1.0"
