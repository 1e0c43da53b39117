"""The one way an alert's state changes in Redis: compare the version, then write.

Every replica reads the alert states at the start of a pass, decides, and
writes back. Between its read and its write another replica (the new owner
during a rebalance, or a process that has not yet noticed it lost its
partitions) may have written the same alert: a plain write would then fire
the alert a second time or drop the other's ``pending`` outbox event. So
each stored alert carries a ``version``, and a write names the version it
was decided on: the script writes only when Redis still holds that version,
in one atomic step with the alert's entry in the active list. A writer that
loses re-reads and decides again on the next pass.

A missing state counts as version 0, and so does one stored before versions
existed (it has no ``version`` key).
"""

from __future__ import annotations

# KEYS[1] state hash, KEYS[2] active-alerts hash
# ARGV[1] field, ARGV[2] expected version, ARGV[3] new state JSON (its version is ARGV[2] + 1),
# ARGV[4] "set" | "del" | "" (what to do with the active entry), ARGV[5] alert id, ARGV[6] active JSON
SAVE_STATE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local version = 0
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and type(decoded['version']) == 'number' then
    version = decoded['version']
  end
end
if version ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] == 'set' then
  redis.call('HSET', KEYS[2], ARGV[5], ARGV[6])
elseif ARGV[4] == 'del' then
  redis.call('HDEL', KEYS[2], ARGV[5])
end
return 1
"""
