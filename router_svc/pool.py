"""ShardPool: the router's shards — long-lived channels, health, in-flight load, the ring.

Membership (which shards exist) comes from outside, through `update`: once from the static
list, or on every read of the Redis registry. Health decides which of them are in the ring:
a member joins on its first passing health check; one that fails `unhealthy_after` checks
in a row leaves (its namespaces fail over to the next shards, which hydrate them from Redis)
and comes back when healthy. A call that finds its shard UNAVAILABLE counts as a failed
check. A member that leaves the membership leaves the ring at once.

A member that leaves the ring because its health checks got no answer in time (frozen: a
stall, SIGSTOP, a black-holed connection) is *ejected*: its `ejected` event is set,
and calls still waiting on it are taken elsewhere by the router (`Router.failover`), so a
frozen shard costs its callers about `unhealthy_after` health checks, not their deadlines.
One that answers NOT_SERVING (draining) leaves the ring but answers what it took.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from router_svc.link import ShardLink
from router_svc.metrics import EJECTIONS, HEALTHY_SHARDS, RING_CHANGES
from semcache.channel import CHANNEL_OPTIONS
from semcache.runtime.periodic import Periodic
from semcache.runtime.ring import HashRing
from semcache.tls import TlsFiles, open_channel
from semcache.v1 import cache_pb2_grpc

log = logging.getLogger(__name__)


@dataclass
class Member:
    id: str
    address: str
    channel: grpc.aio.Channel
    cache: cache_pb2_grpc.SemanticCacheStub
    link: ShardLink  # Lookup, Store and Complete
    admin: cache_pb2_grpc.AdminStub
    health: health_pb2_grpc.HealthStub
    healthy: bool = False
    failures: int = 0
    in_flight: int = 0
    last_error: str = field(default="")
    #: Set while the member is out of the ring because its health checks timed out
    #: (frozen): calls waiting on it give up and go to the next shard.
    ejected: asyncio.Event = field(default_factory=asyncio.Event)


class ShardPool:
    def __init__(
        self,
        *,
        vnodes: int,
        load_factor: float,
        health_interval: float,
        health_timeout: float,
        unhealthy_after: int,
        drain_seconds: float = 30.0,
        tls: TlsFiles | None = None,
    ) -> None:
        self.load_factor = load_factor
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.unhealthy_after = unhealthy_after
        #: Calls still running on a member that left the membership get this long.
        self.drain_seconds = drain_seconds
        self.tls = tls
        self.members: dict[str, Member] = {}
        self.ring = HashRing((), vnodes)
        HEALTHY_SHARDS.set(0)
        self._checker = Periodic(self.check_all, health_interval, "shard health")
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._checker.start()

    async def aclose(self) -> None:
        await self._checker.stop()
        for task in self._closing:
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)
        for member in self.members.values():
            await member.link.aclose()
            await member.channel.close()

    async def update(self, members: Mapping[str, str]) -> None:
        """Makes the membership exactly `members` (id → address) and health-checks newcomers,
        so a healthy one is in the ring when this returns."""
        for member in list(self.members.values()):
            if members.get(member.id) != member.address:
                self._remove(member)
        added = [self._add(i, a) for i, a in members.items() if i not in self.members]
        await asyncio.gather(*(self.check(m) for m in added))

    def _add(self, member_id: str, address: str) -> Member:
        channel = open_channel(address, self.tls, CHANNEL_OPTIONS)
        member = Member(
            id=member_id,
            address=address,
            channel=channel,
            cache=cache_pb2_grpc.SemanticCacheStub(channel),
            link=ShardLink(channel),
            admin=cache_pb2_grpc.AdminStub(channel),
            health=health_pb2_grpc.HealthStub(channel),
        )
        self.members[member_id] = member
        log.info("shard added", extra={"shard": member_id, "address": address})
        return member

    def _remove(self, member: Member) -> None:
        del self.members[member.id]
        if member.healthy:
            member.last_error = "left the membership"
            self._set_healthy(member, False)
        log.info("shard removed", extra={"shard": member.id, "address": member.address})
        # Let calls already on their way finish; new ones no longer see this member.
        task = asyncio.create_task(self._retire(member))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _retire(self, member: Member) -> None:
        member.link.finish()
        try:
            await member.channel.close(grace=self.drain_seconds)
        finally:
            await member.link.aclose()

    def order(self, key: str) -> list[Member]:
        """Healthy shards for `key`, the one to try first first (bounded load applied)."""
        owners = self.ring.owners(key)
        if self.load_factor and len(owners) > 1:
            load = {m: self.members[m].in_flight for m in owners}
            first = self.ring.choose(key, load, self.load_factor)
            if first is not None:
                owners.remove(first)
                owners.insert(0, first)
        return [self.members[m] for m in owners]

    def record_failure(self, member: Member, error: str, *, silent: bool = False) -> None:
        """A failed call or check; `silent`: the shard did not answer at all."""
        member.failures += 1
        member.last_error = error
        current = self.members.get(member.id) is member
        if current and member.healthy and member.failures >= self.unhealthy_after:
            self._set_healthy(member, False)
        if current and not member.healthy and silent and not member.ejected.is_set():
            member.ejected.set()
            EJECTIONS.inc()

    def _record_success(self, member: Member) -> None:
        member.failures = 0
        if not member.healthy:
            self._set_healthy(member, True)

    def _set_healthy(self, member: Member, healthy: bool) -> None:
        member.healthy = healthy
        if healthy:
            member.ejected.clear()
            self.ring.add(member.id)
        else:
            self.ring.remove(member.id)
        RING_CHANGES.labels("join" if healthy else "leave").inc()
        HEALTHY_SHARDS.set(len(self.ring))
        log.log(
            logging.INFO if healthy else logging.WARNING,
            "shard %s the ring",
            "joins" if healthy else "leaves",
            extra={
                "shard": member.id,
                "error": "" if healthy else member.last_error,
                "ring_size": len(self.ring),
            },
        )

    async def check(self, member: Member) -> None:
        silent, error = False, "NOT_SERVING"
        try:
            reply = await member.health.Check(
                health_pb2.HealthCheckRequest(), timeout=self.health_timeout
            )
            serving = reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError as e:
            # No answer within the timeout: frozen. (A dead or stopping shard answers
            # UNAVAILABLE at once, and its calls end by themselves.)
            silent = e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            serving, error = False, e.code().name
        if self.members.get(member.id) is not member:
            return  # removed while the check ran
        if serving:
            self._record_success(member)
        else:
            self.record_failure(member, error, silent=silent)

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(m) for m in list(self.members.values())))
