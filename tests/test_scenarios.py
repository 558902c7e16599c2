"""Scenario files and ``koosim play``: the format, the library, playback and its exit codes.

Every shipped scenario must pass against the bundled reference merchant; malformed files must
end in one line naming the file and the step (exit 2); a faulty or unusable merchant is a failed
expectation under a catalog check id (exit 1), never a traceback.
"""

from __future__ import annotations

import ast
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from jsonschema import Draft202012Validator
from mutants.sequences import RESEND_AFTER_RENEWAL, UNFREEZE_AFTER_RELEASE

from simulator.checks import catalog
from simulator.cli import main
from simulator.engine.player import Player
from simulator.engine.scenario import (
    ScenarioError,
    Unresolved,
    load,
    parse,
    resolve,
    scenario_files,
    schema,
)
from simulator.reference import MerchantConfig, create_app
from simulator.resources import data_dir
from simulator.transport import Target

ACCESS_KEY = "koosim-scenario-access-key"
SYNC_KEY = "koosim-scenario-sync-key"
LIBRARY = scenario_files(data_dir("scenarios"))


def koosim(*args: str, input: str | None = None, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), input=input, env={"COLUMNS": "200", **env})


@pytest.fixture(autouse=True)
def _own_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No koosim.toml or .koosim/ of the developer's leaks in, none of ours leaks out."""
    monkeypatch.chdir(tmp_path)


def merchant_config() -> MerchantConfig:
    return MerchantConfig(access_key=ACCESS_KEY, sync_key=SYNC_KEY)


KEYS = {"KOOSIM_ACCESS_KEY": ACCESS_KEY, "KOOSIM_SYNC_KEY": SYNC_KEY}


# --- the library ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_every_shipped_scenario_passes_against_the_reference_merchant(path: Path) -> None:
    result = koosim("play", str(path))
    assert result.exit_code == 0, result.output
    assert "every expectation met" in result.output
    assert "✗" not in result.output


def test_the_library_covers_every_flow_of_the_protocol() -> None:
    names = {load(path).name for path in LIBRARY}
    assert {
        "new-order",
        "new-order-resend",
        "new-order-concurrent",
        "renewal",
        "trial-to-formal",
        "unsubscribe-renewal",
        "freeze-unfreeze",
        "upgrade",
        "release",
        "full-lifecycle",
        "test-order",
        "license-validity",
        "user-sync",
        "application-sync",
        "query-several",
        "new-order-v1",
    } <= names
    assert all(path.stem == load(path).name for path in LIBRARY)
    assert load(data_dir("scenarios") / "new-order-v1.yaml").protocol == "v1"


def test_koosim_scenarios_lists_the_library() -> None:
    result = koosim("scenarios")
    assert result.exit_code == 0, result.output
    for path in LIBRARY:
        assert load(path).name in result.output


def test_user_scenarios_are_found_by_name_and_win_over_the_library(tmp_path: Path) -> None:
    own = tmp_path / "mine"
    own.mkdir()
    (own / "new-order.yaml").write_text(
        "name: new-order\ndescription: my own\nsteps:\n  - id: only\n    activity: newInstance\n"
        "    fields: {testFlag: '1'}\n    expect: {resultCode: '000000'}\n",
        encoding="utf-8",
    )
    listed = koosim("scenarios", "--scenarios", str(own))
    assert listed.exit_code == 0
    assert "my own" in listed.output
    played = koosim("play", "new-order", "--scenarios", str(own))
    assert played.exit_code == 0, played.output
    assert "only: newInstance" in played.output


def test_a_scenario_round_trips_through_yaml() -> None:
    for path in LIBRARY:
        scenario = load(path)
        again = parse(yaml.safe_load(scenario.to_yaml()), "again.yaml")
        assert again.steps == scenario.steps
        assert (again.name, again.protocol, again.seed) == (scenario.name, scenario.protocol, scenario.seed)


def test_the_format_schema_is_a_valid_2020_12_schema() -> None:
    Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


# --- malformed files --------------------------------------------------------------------------

STEP = "  - id: new\n    activity: newInstance\n"
MALFORMED = {
    "bad-yaml": ("name: x\nsteps:\n" + STEP + "   expect: {resultCode: '000000'}\n", "not valid YAML"),
    "unknown-activity": (
        "name: x\nsteps:\n  - id: new\n    activity: newInstanse\n",
        "unknown activity 'newInstanse' (did you mean newInstance?)",
    ),
    "unknown-step": (
        "name: x\nsteps:\n" + STEP + "  - id: renew\n    activity: refreshInstance\n"
        "    fields: {instanceId: '${nwe.instanceId}'}\n",
        "'nwe', which is not an earlier step",
    ),
    "later-step": (
        "name: x\nsteps:\n  - id: renew\n    activity: refreshInstance\n    of: new\n" + STEP,
        "'new', which is not an earlier step",
    ),
    "unquoted-result-code": (
        "name: x\nsteps:\n" + STEP + "    expect: {resultCode: 000000}\n",
        'resultCode must be a quoted string such as "000000"',
    ),
    "wrong-type": ("name: x\nsteps:\n" + STEP + "    repeat: 'three'\n", "is not of type 'integer'"),
    "unknown-key": (
        "name: x\nsteps:\n" + STEP + "    expct: {resultCode: '000000'}\n",
        "'expct' was unexpected",
    ),
    "duplicate-id": ("name: x\nsteps:\n" + STEP + STEP, "the id is already used by step #1"),
    "unknown-check": ("name: x\nsteps:\n" + STEP + "    check: no.such-check\n", "is not in the catalog"),
    "status-missing": (
        "name: x\nsteps:\n" + STEP + "  - id: freeze\n    activity: updateInstanceStatus\n    of: new\n",
        "needs fields.status",
    ),
}


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_a_malformed_file_is_one_line_naming_file_and_step(tmp_path: Path, case: str) -> None:
    content, problem = MALFORMED[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(content, encoding="utf-8")
    result = koosim("play", str(path))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert problem in lines[0]
    assert "step '" in lines[0]
    assert "Traceback" not in result.output


def test_a_file_that_is_not_a_scenario_at_all(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    result = koosim("play", str(path))
    assert result.exit_code == 2
    assert f"{path}: " in result.stderr and "is not of type 'object'" in result.stderr


def test_an_unknown_scenario_name_is_a_usage_error() -> None:
    result = koosim("play", "no-such-scenario")
    assert result.exit_code == 2
    assert "no-such-scenario: no scenario of that name" in result.stderr


def test_koosim_scenarios_reports_a_broken_file_of_a_user_folder(tmp_path: Path) -> None:
    own = tmp_path / "mine"
    own.mkdir()
    (own / "broken.yaml").write_text(MALFORMED["unknown-activity"][0], encoding="utf-8")
    result = koosim("scenarios", "--scenarios", str(own))
    assert result.exit_code == 2
    assert "broken.yaml: step 'new' (#1): unknown activity" in result.stderr
    assert "full-lifecycle" in result.output  # the good ones are still listed


# --- references and determinism ---------------------------------------------------------------


def test_references_resolve_inside_strings_whole_values_and_escapes() -> None:
    values = {("a", ("instanceId",)): "inst-1", ("b", ("instanceId",)): "inst-2", ("q", ("info",)): [1, 2]}

    def lookup(step_id: str, path: tuple[str, ...]) -> Any:
        if (step_id, path) not in values:
            raise Unresolved(step_id)
        return values[(step_id, path)]

    assert resolve("${a.instanceId},${b.instanceId}", lookup) == "inst-1,inst-2"
    assert resolve({"ids": ["${q.info}"]}, lookup) == {"ids": [[1, 2]]}
    assert resolve("$${a.instanceId} stays", lookup) == "${a.instanceId} stays"
    with pytest.raises(Unresolved):
        resolve("${c.instanceId}", lookup)


def test_ids_come_from_the_file_seed() -> None:
    scenario = load(data_dir("scenarios") / "renewal.yaml")
    target = Target(url="http://127.0.0.1:9/produceAPI", access_key=ACCESS_KEY)  # nothing is sent

    def first_call(seed: str | None = None) -> dict[str, Any]:
        return Player(scenario, target, seed=seed).prepare(scenario.steps[0]).fields

    assert first_call() == first_call()
    assert first_call()["orderId"] != first_call(seed="another")["orderId"]


def test_a_padded_order_keeps_every_order_line_within_the_contract(serve: Any) -> None:
    scenario = parse(
        {
            "name": "long-ids",
            "steps": [
                {"id": "new", "activity": "newInstance", "order": {"id_length": 64}},
                {"id": "up", "activity": "upgradeInstance", "of": "new", "expect": {"resultCode": "000000"}},
            ],
        },
        "long-ids.yaml",
    )
    url = serve(create_app(merchant_config()))
    player = Player(scenario, Target(url=url, access_key=ACCESS_KEY))
    outcome = player.play()
    player.close()
    sent = outcome.steps[0].exchanges[0].fields
    assert len(sent["orderId"]) == len(sent["orderLineId"]) == 64
    upgrade = outcome.steps[1].exchanges[0].fields  # the upgrade order: its own ID, also within 64
    assert len(upgrade["orderId"]) == len(upgrade["orderLineId"]) == 64
    assert upgrade["orderId"] != sent["orderId"]
    assert not outcome.failed, [j.message for s in outcome.steps for j in s.failures]


# --- play --step ------------------------------------------------------------------------------


def test_step_mode_shows_each_call_waits_for_enter_and_judges_it(serve: Any) -> None:
    url = serve(create_app(merchant_config()))
    result = koosim("play", "renewal", "--step", "--url", url, input="\n" * 4, **KEYS)
    assert result.exit_code == 0, result.output
    assert result.output.count("press Enter to send") == 4
    assert '"activity": "refreshInstance"' in result.output  # the request, before it is sent
    assert "2 copies, one after the other" in result.output
    assert "✓ resultCode 000000" in result.output
    assert "✓ same_instance_as new" in result.output
    assert ACCESS_KEY not in result.output and SYNC_KEY not in result.output


def test_step_mode_without_more_input_plays_the_rest_without_pausing() -> None:
    result = koosim("play", "release", "--step", input="\n")
    assert result.exit_code == 0, result.output
    assert "no more input: playing the remaining steps without pausing" in result.output
    assert "release: all met" in result.output


# --- failures ---------------------------------------------------------------------------------


def test_a_sequence_defect_fails_under_the_check_id_verify_uses(serve: Any) -> None:
    url = serve(RESEND_AFTER_RENEWAL.build(merchant_config()))
    result = koosim("play", "renewal", "--url", url, **KEYS)
    assert result.exit_code == 1, result.output
    assert "✗ same_instance_as new [idempotency.new-instance-resend]" in result.output
    assert (
        "koosim verify --url" in result.output and "--checks idempotency.new-instance-resend" in result.output
    )


def test_a_practice_rule_warns_in_play_as_in_verify(serve: Any) -> None:
    # A rule resting on an ASSUMPTION never fails a run (docs/protocol.md §0); this test used to
    # expect play to exit 1 on it.
    url = serve(UNFREEZE_AFTER_RELEASE.build(merchant_config()))
    result = koosim("play", "release", "--url", url, **KEYS)
    assert result.exit_code == 0
    assert "no rule broken" in result.output and "with warnings" in result.output
    assert "[lifecycle.after-release]" in result.output
    assert "koosim verify reports it as a warning" in result.output


def test_check_names_the_id_a_failure_is_reported_under(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "own-id.yaml"
    path.write_text(
        "name: own-id\nsteps:\n" + STEP + "  - id: renew\n    activity: refreshInstance\n    of: new\n"
        "  - id: again\n    resend: new\n    check: lifecycle.full\n"
        "    expect: {resultCode: '000000', same_instance_as: new}\n",
        encoding="utf-8",
    )
    result = koosim("play", str(path), "--url", serve(RESEND_AFTER_RENEWAL.build(merchant_config())), **KEYS)
    assert result.exit_code == 1
    assert "✗ same_instance_as new [lifecycle.full]" in result.output


def test_a_v1_only_scenario_forced_to_v2_is_a_usage_error() -> None:
    # (License is no longer v2-only: the License page publishes the authToken form, §6.1, A56.)
    result = koosim("play", "new-order-v1", "--protocol", "v2")
    assert result.exit_code == 2
    assert "step 'new' (#1): body_sign is a v1 expectation, the target speaks v2" in result.stderr


def test_the_license_scenario_plays_in_the_authtoken_form(serve: Any) -> None:
    url = serve(create_app(merchant_config()))
    result = koosim(
        "play", "license-validity", "--url", url, "--protocol", "v1", "--product", "license", **KEYS
    )
    assert result.exit_code == 0, result.output


def _garbage(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/html")])
    return [b"<html>Service Unavailable</html>"]


def _too_slow(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    time.sleep(1.0)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"resultCode":"000000","resultMsg":"late"}']


def test_a_merchant_answering_garbage_is_a_failed_expectation(serve: Any) -> None:
    result = koosim("play", "new-order", "--url", serve(_garbage), **KEYS)
    assert result.exit_code == 1
    assert "[contract.http-200-json]" in result.output
    assert "not sent: step 'new' has no instanceId" in result.output
    assert isinstance(result.exception, SystemExit)  # an exit code, not a traceback


def test_a_merchant_too_slow_to_answer_is_a_failed_expectation(serve: Any) -> None:
    result = koosim("play", "new-order", "--url", serve(_too_slow), "--timeout", "0.3", **KEYS)
    assert result.exit_code == 1
    assert "[timing.deadline]" in result.output
    assert "no answer within 0.3 s" in result.output


def test_an_unreachable_target_is_exit_3() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = koosim("play", "new-order", "--url", f"http://127.0.0.1:{port}/produceAPI", **KEYS)
    assert result.exit_code == 3
    assert "could not be reached" in result.stderr


def test_a_sync_scenario_without_a_sync_key_is_a_usage_error(serve: Any) -> None:
    url = serve(create_app(merchant_config()))
    result = koosim("play", "user-sync", "--url", url, "--product", "saas-kit", KOOSIM_ACCESS_KEY=ACCESS_KEY)
    assert result.exit_code == 2
    assert "step 'tenant' (#2): a user-sync call needs the sync key" in result.stderr


def test_every_check_id_play_names_is_in_the_catalog() -> None:
    import simulator.checks.answers as answers  # where play's ids are named: beside the catalog

    tree = ast.parse(Path(answers.__file__).read_text(encoding="utf-8"))
    ids = {check.id for check in catalog()}
    families = {check_id.split(".")[0] for check_id in ids}
    named = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"[a-z]+\.[a-z0-9-]+", node.value)
        and node.value.split(".")[0] in families
    }
    assert len(named) > 15
    assert named <= ids, named - ids


def test_scenario_error_is_raised_for_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read it"):
        load(tmp_path / "missing.yaml")


def test_play_records_each_scenario_in_the_run_history(tmp_path: Path) -> None:
    from simulator.store import Store

    db = tmp_path / "history.db"
    result = koosim("play", "new-order", "renewal", "--db", str(db))
    assert result.exit_code == 0, result.output
    runs = Store(db).history.runs(kind="play")
    assert len(runs) == 2
    assert all(run["status"] == "finished" for run in runs), runs
    assert f"koosim show {runs[0]['run_id']}" in result.output
