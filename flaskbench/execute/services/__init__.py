"""The services a real app talks to (Postgres, Redis), started beside the target by the runners:
one module per kind (what it is, how it starts, how it is asked whether it is ready), the
local runner's processes, the docker runner's containers and image, the sampler that counts
their connections, and the lifecycle a cell or a run gives them."""
