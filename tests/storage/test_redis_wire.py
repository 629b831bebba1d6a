"""RedisStore's own command packing (issue 12): the bytes redis-py would send, the same errors.

:func:`idp.storage.hot.pack_command` is compared with redis-py's packer on generated
arguments; :meth:`RedisStore.command` is run against a real Redis for the error contract in
its docstring (error reply: connection kept; an argument redis-py refuses: connection dropped;
``NoScriptError`` raised as it is).
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.connection import PythonRespSerializer
from redis.exceptions import NoScriptError

from idp.errors import StateStoreUnavailable
from idp.storage.hot import RedisStore, pack_command, script_digest

ENCODING, ERRORS = "utf-8", "strict"


#: redis-py's own (pure Python) packer, as a connection of ``redis.Redis`` has it.
REDIS_PY = PythonRespSerializer(6000, redis.Redis().get_encoder().encode)


def redis_py_packs(*args: Any) -> bytes:
    return b"".join(bytes(part) for part in REDIS_PY.pack(*args))


names = st.text(alphabet=st.characters(min_codepoint=65, max_codepoint=122), min_size=1).filter(
    str.isalpha
)
arguments = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
        st.integers(min_value=-(2**70), max_value=2**70),
    ),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(names, arguments)
def test_packs_the_bytes_redis_py_packs(name: str, args: list[Any]) -> None:
    assert pack_command((name, *args), ENCODING, ERRORS) == redis_py_packs(name, *args)


def test_a_long_value_is_one_buffer_with_the_same_bytes() -> None:
    args = ("SET", "k", b"v" * 20_000, "EX", 5)
    assert pack_command(args, ENCODING, ERRORS) == redis_py_packs(*args)


class Level(enum.IntEnum):
    ONE = 1


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("SCRIPT LOAD", "return 1"),
        ("GET\t", "k"),
        ("SÉT", "k"),
        (b"GET", "k"),
        ("SET", "k", 1.5),
        ("SET", "k", True),
        ("SET", "k", bytearray(b"v")),
        ("SET", "k", memoryview(b"v")),
        ("SET", "k", Level.ONE),
        ("SET", "k", None),
    ],
)
def test_anything_else_is_left_to_redis_py(args: tuple[Any, ...]) -> None:
    assert pack_command(args, ENCODING, ERRORS) is None


def test_str_arguments_use_the_connection_encoding() -> None:
    assert pack_command(("GET", "é"), "latin-1", "strict") == b"*2\r\n$3\r\nGET\r\n$1\r\n\xe9\r\n"
    with pytest.raises(UnicodeEncodeError):
        pack_command(("GET", "\ud800"), ENCODING, ERRORS)


def test_script_digest_is_redis_name_and_computed_once() -> None:
    source = "return " + secrets.token_hex(4)
    assert script_digest(source) == hashlib.sha1(source.encode()).hexdigest()
    hits = script_digest.cache_info().hits
    script_digest(source)
    assert script_digest.cache_info().hits == hits + 1


# ------------------------------------------------------------------ against a real Redis
needs_redis = pytest.mark.redis


@pytest.fixture
def store(redis_url: str) -> RedisStore:
    return RedisStore(redis_url, namespace="wire-" + secrets.token_hex(4))


def connection_id(store: RedisStore) -> int:
    return int(store.command("id", "CLIENT", "ID"))


@needs_redis
def test_values_go_and_come_back(store: RedisStore) -> None:
    key = store.key("k", "社保")
    assert store.command("set", "SET", key, "值 é", "EX", 60) == b"OK"
    assert store.command("get", "GET", key) == "值 é".encode()
    store.put("v", "n", b"\x00\xff\r\n", 60)
    assert store.take("v", "n") == b"\x00\xff\r\n" and store.take("v", "n") is None
    assert store.command("incr", "INCRBY", store.key("c", "n"), -(2**40)) == -(2**40)
    # A float goes through redis-py's packer (its repr), and works the same.
    assert store.command("incr", "INCRBYFLOAT", store.key("c", "f"), 1.5) == b"1.5"
    # A name redis-py splits ("SCRIPT LOAD") is still split.
    sha = store.command("load", "SCRIPT LOAD", "return 7")
    assert sha.decode() == script_digest("return 7")
    assert store.script("seven", "return 7", [], []) == 7


@needs_redis
def test_an_error_reply_keeps_the_connection(store: RedisStore) -> None:
    mine = connection_id(store)
    store.command("set", "SET", store.key("k", "s"), "text")
    with pytest.raises(StateStoreUnavailable, match="redis incr: ResponseError"):
        store.command("incr", "INCR", store.key("k", "s"))
    with pytest.raises(StateStoreUnavailable, match="redis nope: ResponseError"):
        store.command("nope", "NOSUCHCOMMAND", "x")
    assert connection_id(store) == mine


@needs_redis
def test_an_argument_redis_py_refuses_drops_the_connection(store: RedisStore) -> None:
    mine = connection_id(store)
    with pytest.raises(StateStoreUnavailable, match="redis set: DataError"):
        store.command("set", "SET", store.key("k", "b"), True)
    assert connection_id(store) != mine


@needs_redis
def test_an_argument_the_encoding_refuses_is_raised_as_it_is(store: RedisStore) -> None:
    mine = connection_id(store)
    with pytest.raises(UnicodeEncodeError):
        store.command("get", "GET", "\ud800")
    assert connection_id(store) == mine


@needs_redis
def test_a_lost_script_is_raised_as_no_script_and_loaded_again(store: RedisStore) -> None:
    source = "return " + str(secrets.randbelow(10**6))
    with pytest.raises(NoScriptError):
        store.command("run", "EVALSHA", script_digest(source), 0)
    assert store.script("run", source, [], []) == int(source.split()[1])
    store.client.script_flush()
    assert store.script("run", source, [], []) == int(source.split()[1])
