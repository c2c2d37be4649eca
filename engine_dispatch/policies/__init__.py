"""One module per dispatch policy; build them by name with :func:`engine_dispatch.factory.create_dispatcher`."""
