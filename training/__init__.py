"""Training entry points for the ros3d_agent model (datasets, losses, trainer on accelerate).

Imports the library; the library never imports this package.
"""
