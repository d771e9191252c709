"""USAGE_ETL_RLS_* and USAGE_ETL_*_ROLE: defaults of each mode and a clear error for each bad value."""

from __future__ import annotations

import pytest

from usage_etl.settings import ConfigError
from usage_etl.settings import SecuritySettings


def test_postgres_mode_defaults():
    s = SecuritySettings.from_env({})
    assert s == SecuritySettings(
        mode="postgres", identity="setting", user_setting="usage_etl.user_id", writer_role="usage_etl_writer",
        reader_role="usage_etl_reader", admin_role="usage_etl_admin", anon_role=None, admin_table=None,
    )
    assert s.dashboard_roles == ["usage_etl_reader", "usage_etl_admin"]
    assert s.describe() == "readers: user id from session setting usage_etl.user_id; admins: members of usage_etl_admin"


def test_supabase_mode_defaults_to_authenticated_anon_and_user_roles():
    s = SecuritySettings.from_env({"USAGE_ETL_RLS_MODE": "supabase"})
    assert (s.identity, s.reader_role, s.anon_role, s.admin_role) == ("supabase", "authenticated", "anon", "usage_etl_admin")
    assert (s.admin_table, s.admin_user_column, s.admin_role_column, s.admin_value) == (("public", "user_roles"), "user_id", "user_role", "admin")
    assert s.describe() == ("readers: user id from Supabase auth.uid(); admins: members of usage_etl_admin and "
                            "users with user_role = 'admin' in public.user_roles")


def test_every_name_is_configurable():
    s = SecuritySettings.from_env({
        "USAGE_ETL_RLS_IDENTITY": "role", "USAGE_ETL_RLS_USER_SETTING": "app.uid", "USAGE_ETL_WRITER_ROLE": "Etl Writer",
        "USAGE_ETL_READER_ROLE": "grafana", "USAGE_ETL_ADMIN_ROLE": "", "USAGE_ETL_ANON_ROLE": "web_anon",
        "USAGE_ETL_RLS_ADMIN_TABLE": "staff", "USAGE_ETL_RLS_ADMIN_USER_COLUMN": "uid", "USAGE_ETL_RLS_ADMIN_ROLE_COLUMN": "kind",
        "USAGE_ETL_RLS_ADMIN_VALUE": "boss",
    })
    assert s == SecuritySettings(identity="role", user_setting="app.uid", writer_role="Etl Writer", reader_role="grafana",
                                 admin_role=None, anon_role="web_anon", admin_table=("public", "staff"), admin_user_column="uid",
                                 admin_role_column="kind", admin_value="boss")
    assert s.dashboard_roles == ["grafana"]
    assert s.describe() == "readers: user id from role name (current_user); admins: users with kind = 'boss' in public.staff"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"USAGE_ETL_RLS_MODE": "mysql"}, "USAGE_ETL_RLS_MODE='mysql' must be one of postgres, supabase"),
        ({"USAGE_ETL_RLS_IDENTITY": "jwt"}, "USAGE_ETL_RLS_IDENTITY='jwt' must be one of setting, role in postgres mode"),
        ({"USAGE_ETL_RLS_MODE": "supabase", "USAGE_ETL_RLS_IDENTITY": "role"}, "USAGE_ETL_RLS_IDENTITY applies to USAGE_ETL_RLS_MODE=postgres only"),
        ({"USAGE_ETL_RLS_USER_SETTING": "user_id"}, "USAGE_ETL_RLS_USER_SETTING='user_id' is not a custom setting name"),
        ({"USAGE_ETL_WRITER_ROLE": ""}, "USAGE_ETL_WRITER_ROLE='' is not a role name"),
        ({"USAGE_ETL_READER_ROLE": "usage_etl_admin"}, "the writer, reader, admin and anonymous roles must differ"),
        ({"USAGE_ETL_ANON_ROLE": "pg_monitor"}, "USAGE_ETL_ANON_ROLE='pg_monitor' is reserved by PostgreSQL"),
        ({"USAGE_ETL_RLS_ADMIN_TABLE": "auth."}, "USAGE_ETL_RLS_ADMIN_TABLE=('auth', '') must be schema.table"),
        ({"USAGE_ETL_RLS_ADMIN_TABLE": "x", "USAGE_ETL_RLS_ADMIN_ROLE_COLUMN": ""}, "USAGE_ETL_RLS_ADMIN_ROLE_COLUMN is empty"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(env, message):
    with pytest.raises(ConfigError) as err:
        SecuritySettings.from_env(env)
    assert str(err.value).startswith(message)
