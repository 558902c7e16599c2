def render(record):
    raise NotImplementedError
