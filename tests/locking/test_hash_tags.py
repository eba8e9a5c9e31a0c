"""Names that would break the shared hash tag of a lock's keys are refused at once.

Every Redis key of a lock (or of a fenced key) carries the name as its
hash tag, `{<name>}`, so that a Redis Cluster keeps them in one slot. A
name that begins with `}` (`"}x"`) leaves the tag empty, so each key
hashes whole and lands in a slot of its own: on a standalone Redis that
works, on a cluster every script fails with "all keys must map to the same
key slot", which used to be retried as an outage. Such a name is now a
`ConfigurationError` on construction (on the first use of a fenced key).
"""

from __future__ import annotations

from typing import Any

import pytest

from scalekit.exceptions import ConfigurationError
from scalekit.testing import RedisClusterServers

redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")
from redis.cluster import RedisCluster  # noqa: E402

from scalekit.locking import (  # noqa: E402
    RedisLock,
    RedisReadWriteLock,
    RedisSemaphore,
    Redlock,
)
from scalekit.locking.async_redis_lock import AsyncRedisLock  # noqa: E402
from scalekit.locking.fencing import RedisFencedStore  # noqa: E402

pytestmark = pytest.mark.redis

BAD = ["}x", "}"]


@pytest.mark.parametrize("name", BAD)
def test_redis_locks_refuse_a_name_that_breaks_the_hash_tag(redis_client: Any, name: str) -> None:
    makers = [
        lambda: RedisLock(redis_client, name),
        lambda: RedisSemaphore(redis_client, name, 2),
        lambda: RedisReadWriteLock(redis_client, name),
        lambda: Redlock([redis_client], name),
        lambda: AsyncRedisLock(redis_asyncio.Redis(), name),
    ]
    for make in makers:
        with pytest.raises(ConfigurationError, match=r"name .* empty hash tag") as info:
            make()
        assert repr(name) in str(info.value)


def test_the_fenced_store_refuses_such_keys_and_namespaces(redis_client: Any) -> None:
    store = RedisFencedStore(redis_client)
    with pytest.raises(ConfigurationError, match=r"key '}x' .* empty hash tag"):
        store.write("}x", 1, 5)
    with pytest.raises(ConfigurationError, match=r"namespace 'a{}:' .* empty hash tag"):
        RedisFencedStore(redis_client, namespace="a{}:")


def test_names_with_other_characters_work_on_a_cluster(
    redis_cluster: RedisClusterServers,
) -> None:
    client = RedisCluster(host=redis_cluster.host, port=redis_cluster.port)
    try:
        for name in ["{x", "a}b", "{x}", "a{b}c", "ünï:cødé", "{"]:
            lease = RedisLock(client, name, ttl=5).acquire(timeout=2)
            assert lease is not None
            RedisFencedStore(client).write(name, 1, lease)
            lease.release()
    finally:
        client.close()
