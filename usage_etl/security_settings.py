"""Settings of the readers' security (docs/security.md), read from the environment.

| variable | default (postgres mode) | default (supabase mode) | meaning |
|---|---|---|---|
| USAGE_ETL_RLS_MODE | postgres | | how a reader is identified: postgres or supabase |
| USAGE_ETL_RLS_IDENTITY | setting | (not used) | postgres mode: `setting` (a session setting) or `role` (the role name) |
| USAGE_ETL_RLS_USER_SETTING | usage_etl.user_id | (not used) | the session setting holding the user id |
| USAGE_ETL_WRITER_ROLE | usage_etl_writer | usage_etl_writer | role owning the tables; the pipeline runs as it |
| USAGE_ETL_READER_ROLE | usage_etl_reader | authenticated | role of dashboards: reads its own rows |
| USAGE_ETL_ADMIN_ROLE | usage_etl_admin | usage_etl_admin | members read every row; empty: none |
| USAGE_ETL_ANON_ROLE | (empty) | anon | role stripped of every privilege on our objects; empty: none |
| USAGE_ETL_RLS_ADMIN_TABLE | (empty) | public.user_roles | schema.table listing admins; empty: no table check |
| USAGE_ETL_RLS_ADMIN_USER_COLUMN | user_id | user_id | its user id column (compared as text) |
| USAGE_ETL_RLS_ADMIN_ROLE_COLUMN | user_role | user_role | its role column (compared as text) |
| USAGE_ETL_RLS_ADMIN_VALUE | admin | admin | the role column's value that makes a user an admin |
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from usage_etl.config import ConfigError

MODES = ("postgres", "supabase")
IDENTITIES = ("setting", "role")
# PostgreSQL's rule for a custom setting name (guc.c valid_custom_variable_name): two or more
# dot-separated parts, each a letter, _ or non-ASCII character, then also digits and $.
_PART = r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*"
SETTING_NAME = re.compile(rf"{_PART}(?:\.{_PART})+")
# Names PostgreSQL refuses for a role (or reads as something else in GRANT ... TO name).
_RESERVED_ROLES = {"public", "none"}


def check_role_name(var: str, value: str) -> str:
    """`value` if PostgreSQL accepts it as a role name (any text, quoted), else ConfigError naming `var`."""
    if not value or "\x00" in value:
        raise ConfigError(f"{var}={value!r} is not a role name: empty or with a NUL character")
    if len(value.encode()) > 63:
        raise ConfigError(f"{var}={value!r} is longer than 63 bytes, the longest name PostgreSQL keeps")
    if value.lower() in _RESERVED_ROLES or value.startswith("pg_"):
        raise ConfigError(f"{var}={value!r} is reserved by PostgreSQL (public, none and pg_* are not role names)")
    return value


def check_setting_name(var: str, value: str) -> str:
    """`value` if it is a valid custom setting name (e.g. usage_etl.user_id), else ConfigError."""
    if not SETTING_NAME.fullmatch(value):
        raise ConfigError(
            f"{var}={value!r} is not a custom setting name: two or more dot-separated parts of letters, "
            "digits, _ and $, each starting with a letter or _ (e.g. usage_etl.user_id)"
        )
    return value


@dataclass(frozen=True)
class SecuritySettings:
    """Who owns, who reads, and how a reader's user id and admin status are known.

    `identity` is what the policies use: 'setting' (session setting `user_setting`), 'role'
    (current_user) or 'supabase' (auth.uid()). `admin_table` is (schema, table) or None.
    """

    mode: str = "postgres"
    identity: str = "setting"
    user_setting: str = "usage_etl.user_id"
    writer_role: str = "usage_etl_writer"
    reader_role: str = "usage_etl_reader"
    admin_role: str | None = "usage_etl_admin"
    anon_role: str | None = None
    admin_table: tuple[str, str] | None = None
    admin_user_column: str = "user_id"
    admin_role_column: str = "user_role"
    admin_value: str = "admin"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"USAGE_ETL_RLS_MODE={self.mode!r} must be one of {', '.join(MODES)}")
        allowed = ("supabase",) if self.mode == "supabase" else IDENTITIES
        if self.identity not in allowed:
            raise ConfigError(f"USAGE_ETL_RLS_IDENTITY={self.identity!r} must be one of {', '.join(allowed)} in {self.mode} mode")
        check_setting_name("USAGE_ETL_RLS_USER_SETTING", self.user_setting)
        roles = {"USAGE_ETL_WRITER_ROLE": self.writer_role, "USAGE_ETL_READER_ROLE": self.reader_role,
                 "USAGE_ETL_ADMIN_ROLE": self.admin_role, "USAGE_ETL_ANON_ROLE": self.anon_role}
        named = {var: check_role_name(var, v) for var, v in roles.items() if v is not None}
        if len(set(named.values())) != len(named):
            raise ConfigError(f"the writer, reader, admin and anonymous roles must differ: {named}")
        if self.admin_table is not None:
            if len(self.admin_table) != 2 or not all(self.admin_table):
                raise ConfigError(f"USAGE_ETL_RLS_ADMIN_TABLE={self.admin_table!r} must be schema.table")
            for var, v in (("USAGE_ETL_RLS_ADMIN_USER_COLUMN", self.admin_user_column),
                           ("USAGE_ETL_RLS_ADMIN_ROLE_COLUMN", self.admin_role_column)):
                if not v:
                    raise ConfigError(f"{var} is empty: it names a column of USAGE_ETL_RLS_ADMIN_TABLE")

    @property
    def dashboard_roles(self) -> list[str]:
        """The roles granted read access: the reader role and the admin role (if any)."""
        return [r for r in (self.reader_role, self.admin_role) if r]

    def describe(self) -> str:
        """One line: how readers and admins are identified."""
        who = {"setting": f"session setting {self.user_setting}", "role": "role name (current_user)",
               "supabase": "Supabase auth.uid()"}[self.identity]
        admins = [f"members of {self.admin_role}"] if self.admin_role else []
        if self.admin_table:
            admins.append(f"users with {self.admin_role_column} = {self.admin_value!r} in {'.'.join(self.admin_table)}")
        return f"readers: user id from {who}; admins: {' and '.join(admins) or 'nobody'}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "SecuritySettings":
        """Build from `env` (default os.environ). Raises ConfigError naming the variable."""
        env = dict(os.environ) if env is None else env
        mode = env.get("USAGE_ETL_RLS_MODE", "postgres")
        supabase = mode == "supabase"
        if supabase and env.get("USAGE_ETL_RLS_IDENTITY"):
            raise ConfigError("USAGE_ETL_RLS_IDENTITY applies to USAGE_ETL_RLS_MODE=postgres only (Supabase uses auth.uid())")
        identity = "supabase" if supabase else env.get("USAGE_ETL_RLS_IDENTITY", "setting")
        table = env.get("USAGE_ETL_RLS_ADMIN_TABLE", "public.user_roles" if supabase else "")
        parts = tuple(table.split(".", 1)) if "." in table else ("public", table)
        d = cls()
        return cls(
            mode=mode,
            identity=identity,
            user_setting=env.get("USAGE_ETL_RLS_USER_SETTING", d.user_setting),
            writer_role=env.get("USAGE_ETL_WRITER_ROLE", d.writer_role),
            reader_role=env.get("USAGE_ETL_READER_ROLE", "authenticated" if supabase else d.reader_role),
            admin_role=env.get("USAGE_ETL_ADMIN_ROLE", d.admin_role) or None,
            anon_role=env.get("USAGE_ETL_ANON_ROLE", "anon" if supabase else "") or None,
            admin_table=parts if table else None,  # type: ignore[arg-type]
            admin_user_column=env.get("USAGE_ETL_RLS_ADMIN_USER_COLUMN", d.admin_user_column),
            admin_role_column=env.get("USAGE_ETL_RLS_ADMIN_ROLE_COLUMN", d.admin_role_column),
            admin_value=env.get("USAGE_ETL_RLS_ADMIN_VALUE", d.admin_value),
        )
