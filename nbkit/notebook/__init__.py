"""The notebook layer: IPython magics and widgets on top of the core and the figures."""
