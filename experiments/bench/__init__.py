"""``moesched bench``: an async streaming client that replays workloads against real endpoints.

``prompts`` builds exact-length prompts from the server's tokenizer, ``client`` sends one request
and measures it, ``replay`` schedules requests at their arrival times over interleaved, repeated
rounds, ``endpoints`` parses and preflight-checks servers, ``cli`` ties them to the command line.
"""
