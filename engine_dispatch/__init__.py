"""Engine layer: which engine (data-parallel rank or server) gets a request.

Pure core (the HTTP host in ``engine_dispatch.router`` is the only part that does I/O). Hosts
describe engines as :class:`~engine_dispatch.types.EngineLoad` and requests as
:class:`~engine_dispatch.types.DispatchRequest`, and ask a :class:`~engine_dispatch.dispatcher.Dispatcher`.
"""
