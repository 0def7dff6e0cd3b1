"""Every kind of service flaskbench can start, by the name `[services.NAME] kind` gives."""

from __future__ import annotations

from collections.abc import Mapping

from flaskbench.execute.services import postgres, redis
from flaskbench.execute.services.service import Kind

KINDS: Mapping[str, Kind] = {kind.name: kind for kind in (postgres.KIND, redis.KIND)}
