"""The core: models, data, config, training, attention and runs. Never imports IPython, widgets or plotting."""
