"""The contract schemas in contracts/ and the loader in simulator/contracts.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from simulator import contracts
from simulator.contracts import UnknownContract, Violation, known_contracts, schema_for, validate
from simulator.model import v1_fields
from simulator.protocol.codes import ResultCode
from simulator.resources import data_dir

PRODUCE = [
    "newInstance",
    "refreshInstance",
    "updateInstanceStatus",
    "releaseInstance",
    "upgradeInstance",
    "queryInstance",
    "changeInstanceCheck",
]
"""The V2 produce activities (docs/protocol.md §4)."""
V1_NAME = {"upgradeInstance": "upgrade"}
"""Where V1 names an activity differently (docs/protocol.md §5.1: V1's upgrade is ``upgrade``)."""
PRODUCE_V1 = [
    "newInstance",
    "refreshInstance",
    "expireInstance",
    "releaseInstance",
    "instanceStatus",
    "upgrade",
]
"""The V1 activity set (docs/protocol.md §5.1): no V1 queryInstance, updateInstanceStatus or
changeInstanceCheck (U21); expireInstance (§5.4) and instanceStatus (§5.6) are V1's own."""
V1_OWN = {
    "expireInstance": [
        {"activity": "expireInstance", "instanceId": "inst-001", "orderId": "CS1906666666ABCDE"},
        {
            "activity": "expireInstance",
            "instanceId": "inst-001",
            "orderId": "CS1906666666ABCDE",
            "testFlag": "1",
        },
    ],
    "instanceStatus": [
        {"activity": "instanceStatus", "instanceId": "inst-001", "instanceStatus": "FREEZE"},
        {"activity": "instanceStatus", "instanceId": "inst-001", "instanceStatus": "NORMAL", "testFlag": "0"},
    ],
}
"""V1 requests with no V2 counterpart, from the tables of §5.4 and §5.6."""
ACTIVITY_MAX = {
    "newInstance": 20,
    "refreshInstance": 20,
    "upgradeInstance": 32,
    "updateInstanceStatus": 32,
    "queryInstance": 20,
    "releaseInstance": 32,
    "changeInstanceCheck": 32,
}
"""The Maximum Length of each V2 table's ``activity`` row (docs/protocol.md §4.1-§4.7)."""
LICENSE = ["getLicense", "refreshLicense", "expireLicense", "releaseLicense"]
LICENSE_ASYNC = "getLicenseAsync"
"""§6.2: V2 only (its table is the V2 transport [S52])."""
SYNC = ["tenantSync", "applicationSync", "authSync", "singleOrgSync", "allOrgSync"]
MARKETPLACE = ["queryOrder", "usagePush"]
DIRECTIONS = ["request", "response"]

EXPECTED = sorted(
    [("v2", name, d) for name in [*PRODUCE, *LICENSE, LICENSE_ASYNC] for d in DIRECTIONS]
    + [("v1", name, d) for name in PRODUCE_V1 + LICENSE for d in DIRECTIONS]
    + [("sync", name, d) for name in SYNC for d in DIRECTIONS]
    + [("openapi", name, d) for name in MARKETPLACE for d in DIRECTIONS]
)

# contracts/scenario/scenario.schema.json is the scenario file format, not an interface contract.
SCHEMA_FILES = sorted(
    p for p in data_dir("contracts").glob("*/*.json") if not p.name.endswith(".schema.json")
)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


# --- the files themselves ---------------------------------------------------------------


def test_the_expected_files_exist_and_nothing_else() -> None:
    on_disk = sorted(
        (path.parent.name, *path.name.removesuffix(".json").rsplit(".", 1)) for path in SCHEMA_FILES
    )
    assert on_disk == EXPECTED
    assert known_contracts() == EXPECTED


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_schema_is_a_valid_2020_12_schema_with_metadata(path: Path) -> None:
    schema = _load(path)
    Draft202012Validator.check_schema(schema)
    family, name, direction = path.parent.name, *path.name.removesuffix(".json").rsplit(".", 1)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://koosim.dev/contracts/{family}/{name}.{direction}.json"
    assert schema["title"].strip()
    assert len(schema["description"]) > 80


def _subschemas(schema: Any) -> list[dict[str, Any]]:
    """Every schema object nested in ``schema``, itself included."""
    if isinstance(schema, list):
        return [found for item in schema for found in _subschemas(item)]
    if not isinstance(schema, dict):
        return []
    found = [schema]
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            found += [sub for child in value.values() for sub in _subschemas(child)]
        elif key in ("items", "if", "then", "else", "anyOf", "oneOf", "allOf", "not"):
            found += _subschemas(value)
    return found


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_listed_member_is_typed_and_extra_members_are_allowed(path: Path) -> None:
    for sub in _subschemas(_load(path)):
        assert sub.get("additionalProperties", True) is True
        for member, spec in sub.get("properties", {}).items():
            typed = "type" in spec or "const" in spec or "anyOf" in spec
            assert typed, f"{path.name}: member {member!r} has no type"


def test_request_activity_is_a_const_equal_to_the_file_name() -> None:
    for family, name, direction in EXPECTED:
        if family in ("v1", "v2") and direction == "request":
            schema = schema_for(family, name, direction)
            activity = schema["properties"]["activity"]
            assert activity["type"] == "string" and activity["const"] == name
            assert "activity" in schema["required"]
            if family == "v2" and name in ACTIVITY_MAX:
                assert activity["maxLength"] == ACTIVITY_MAX[name], name


def test_v1_adds_its_signature_parameters() -> None:
    for name in PRODUCE_V1:
        schema = schema_for("v1", name, "request")
        assert {"timeStamp", "authToken"} <= set(schema["required"])
        assert schema["properties"]["timeStamp"]["pattern"] == "^[0-9]{17}$"


def test_v1_answers_are_the_v2_answers() -> None:
    metadata = ("$id", "title", "description")
    for name in PRODUCE:
        if V1_NAME.get(name, name) not in PRODUCE_V1:
            continue
        v1, v2 = schema_for("v1", V1_NAME.get(name, name), "response"), schema_for("v2", name, "response")
        assert {k: v for k, v in v1.items() if k not in metadata} == {
            k: v for k, v in v2.items() if k not in metadata
        }


BASE_CODES = {"000000", "000001", "000002", "000004", "000005"}
LISTED_CODES = BASE_CODES | {"000003", "000100"}
"""The published code list (docs/protocol.md §3.2): any of it is a valid answer of any produce
activity (which code koosim expects of which activity is contract.result-code-per-activity's
warning, U15; changed from per-activity enums by issue 17, K33)."""
ALLOWED_CODES = {
    "newInstance": LISTED_CODES,
    "refreshInstance": LISTED_CODES,
    "updateInstanceStatus": LISTED_CODES,
    "releaseInstance": LISTED_CODES,
    "expireInstance": LISTED_CODES,
    "instanceStatus": LISTED_CODES,
    "upgrade": LISTED_CODES,
    "upgradeInstance": LISTED_CODES,
    "queryInstance": LISTED_CODES,
    "changeInstanceCheck": LISTED_CODES,
    "getLicense": BASE_CODES,
    "refreshLicense": BASE_CODES | {"000003"},
    "expireLicense": BASE_CODES | {"000003"},
    "releaseLicense": BASE_CODES | {"000003"},
    "tenantSync": BASE_CODES,
    "applicationSync": BASE_CODES | {"000101"},
    "authSync": BASE_CODES,
    "singleOrgSync": BASE_CODES,
    "allOrgSync": BASE_CODES,
}

SUCCESS_NEEDS = {"newInstance": "instanceId", "getLicense": "license"}  # queryInstance info is O (§4.5)
"""The member each call's answer must carry when resultCode is 000000."""


@pytest.mark.parametrize(
    ("family", "name"),
    [("v2", n) for n in PRODUCE + LICENSE] + [("v1", n) for n in PRODUCE_V1] + [("sync", n) for n in SYNC],
)
def test_answers_allow_exactly_the_codes_of_their_call(family: str, name: str) -> None:
    schema = schema_for(family, name, "response")
    code = schema["properties"]["resultCode"]
    assert code["type"] == "string"
    assert code["pattern"] == "^[0-9]{6}$"
    assert set(code["enum"]) == ALLOWED_CODES[name]
    assert set(code["enum"]) <= {c.value for c in ResultCode}
    # resultMsg is optional, at most 255 characters (docs/protocol.md §3.1; this test required it)
    assert "resultCode" in schema["required"] and "resultMsg" not in schema["required"]
    assert schema["properties"]["resultMsg"]["maxLength"] == 255
    for failure in ALLOWED_CODES[name] - {"000000"}:
        assert validate({"resultCode": failure, "resultMsg": "m"}, family, name, "response") == []
    bare_success = validate({"resultCode": "000000", "resultMsg": "m"}, family, name, "response")
    expected = [f"$.{SUCCESS_NEEDS[name]}"] if name in SUCCESS_NEEDS else []
    assert [violation.path for violation in bare_success] == expected


# --- valid exchanges ----------------------------------------------------------------------

# protocol.md §2 test vector body, verbatim (a signing vector: it omits members newInstance requires).
SECTION_2_BODY = {
    "activity": "newInstance",
    "orderId": "CS1906666666ABCDE",
    "orderLineId": "CS1906666666ABCDE-000001",
    "customerName": "测试客户",
    "testFlag": "1",
    "saasExtendParams": None,
}
# protocol.md §4 test vector body, verbatim.
SECTION_4_BODY = {
    "instanceId": "inst-001",
    "tenantId": "t-001",
    "appId": "app-001",
    "userList": [{"userName": "alice", "name": "Alice"}],
    "flag": "1",
}
ENCRYPTED = "0123456789abcdefwY6Pgfqxrl//dezrq9KbkA=="  # protocol.md §5, encryptType 2
IDS_100_CHARS = ",".join(f"inst-{i:03d}" for i in range(11)) + ",x"
"""Twelve IDs in exactly 100 characters: the most queryInstance's instanceId holds (§4.5, A9)."""
IDS_101 = ",".join(f"inst-{i:03d}" for i in range(101))
V1 = {"timeStamp": "20231114221320000", "authToken": "eVUwTfvWeeFmdlI7w71kWM2HgB4+Rc3UalMe7R3sVPg="}
OK = {"resultCode": "000000", "resultMsg": "success."}
APP_INFO = {
    "frontEndUrl": "https://merchant.example/app",
    "adminUrl": "https://merchant.example/admin",
    "userName": ENCRYPTED,
    "password": ENCRYPTED,
    "memo": "首次登录请修改密码",
}
NEW_INSTANCE = {
    "activity": "newInstance",
    "orderId": "CS1906666666ABCDE",
    "orderLineId": "CS1906666666ABCDE-000001",
    "businessId": "61e834ba-7b97-4418-b8f7-e5345137278c",
    "testFlag": "1",
}
"""The five fields of docs/protocol.md §4.1's table."""
PRODUCE_REQUESTS: dict[str, list[dict[str, Any]]] = {
    "newInstance": [
        NEW_INSTANCE,
        {key: value for key, value in NEW_INSTANCE.items() if key != "testFlag"},
        {**NEW_INSTANCE, "testFlag": "0"},
        {
            **NEW_INSTANCE,
            "customerId": "68cbc86abc2018ab880d92f36422fa0e",
            "userId": "u-1",
            "userName": "buyer",
            "mobilePhone": "13800000000",
            "email": "buyer@example.com",
            "chargingMode": "0",
            "periodType": "month",
            "periodNumber": "12",
            "expireTime": "20251114235959",
            "trialFlag": "0",
            "saasExtendParams": "W3sibmFtZSI6ImVtYWlsIiwidmFsdWUiOiJhQGIuY29tIn1d",
            "aFieldAddedNextYear": "ignored",
        },
    ],
    "refreshInstance": [
        {
            "activity": "refreshInstance",
            "instanceId": "inst-001",
            "orderId": "CS1906666666ABCDF",
            "orderLineId": "CS1906666666ABCDF-000001",
            "expireTime": "20261114235959",
            "scene": "RENEWAL",
        },
        {
            "activity": "refreshInstance",
            "instanceId": "inst-001",
            "orderId": "CS1906666666ABCDF",
            "orderLineId": "CS1906666666ABCDF-000001",
            "expireTime": "20261114235959",
            "scene": "TRIAL_TO_FORMAL",
            "productId": "00301-666666-0--1",
        },
    ],
    "updateInstanceStatus": [
        {"activity": "updateInstanceStatus", "instanceId": "inst-001", "status": "FREEZE"},
        {"activity": "updateInstanceStatus", "instanceId": "inst-001", "status": "UNFREEZE", "testFlag": "1"},
    ],
    "releaseInstance": [
        {"activity": "releaseInstance", "instanceId": "inst-001"},
        {"activity": "releaseInstance", "instanceId": "inst-001", "orderId": "CS1906666666ABCDE"},
        {
            "activity": "releaseInstance",
            "instanceId": "inst-001",
            "orderId": "CS1906666666ABCDF",
            "orderLineId": "CS1906666666ABCDF-000001",
        },
    ],
    "upgradeInstance": [
        {
            "activity": "upgradeInstance",
            "instanceId": "inst-001",
            "orderId": "CS1906666666ABCDG",
            "orderLineId": "CS1906666666ABCDG-000001",
        }
    ],
    "queryInstance": [
        {"activity": "queryInstance", "instanceId": "inst-001"},
        {"activity": "queryInstance", "instanceId": IDS_100_CHARS},
    ],
    "changeInstanceCheck": [
        {
            "activity": "changeInstanceCheck",
            "instanceId": "inst-001",
            "productInfo": {"productId": "00301-666666-0--2", "skuCode": "a1b2c3d4-0003"},
            "testFlag": "1",
        }
    ],
}
LICENSE_REQUESTS: dict[str, list[dict[str, Any]]] = {
    "getLicense": [
        {
            "activity": "getLicense",
            "businessId": "b-1",
            "orderId": "CS1906666666ABCDE",
            "orderLineId": "CS1906666666ABCDE-000001",
            "customerId": "68cbc86abc2018ab880d92f36422fa0e",
            "productId": "00301-666666-0--0",
            "skuCode": "a1b2c3d4-0001",
            "expireTime": "20251114235959",
            "trialFlag": "1",
            "testFlag": None,
        }
    ],
    "refreshLicense": [
        {
            "activity": "refreshLicense",
            "orderId": "CS1906666666ABCDE",
            "orderLineId": "CS1906666666ABCDE-000001",
            "license": "LIC-0001",
            "expireTime": "20261114235959",
            "scene": "RENEWAL",
        }
    ],
    "expireLicense": [
        {
            "activity": "expireLicense",
            "orderId": "CS1906666666ABCDE",
            "orderLineId": "CS1906666666ABCDE-000001",
            "license": "LIC-0001",
        }
    ],
    "releaseLicense": [
        {
            "activity": "releaseLicense",
            "orderId": "CS1906666666ABCDE",
            "orderLineId": "CS1906666666ABCDE-000001",
            "license": "LIC-0001",
        }
    ],
}


def _v1(request: dict[str, Any]) -> dict[str, Any]:
    """A v1 query: nulls cannot travel in a query string, objects travel as JSON text; V1's
    activity names and members (docs/protocol.md §5, via the model's mapping)."""
    query = {k: v for k, v in v1_fields(request, product_id="00301-666666-0--2").items() if v is not None}
    if isinstance(query.get("productInfo"), dict):
        query["productInfo"] = json.dumps(query["productInfo"])
    for encrypted in ("mobilePhone", "email"):
        if encrypted in query:
            query[encrypted] = ENCRYPTED
    return {**query, **V1}


ANSWERS: dict[str, list[dict[str, Any]]] = {
    "newInstance": [
        {**OK, "instanceId": "inst-001"},
        {**OK, "instanceId": "i" * 64, "encryptType": "2", "appInfo": APP_INFO},
        {**OK, "instanceId": "inst-001", "encryptType": None, "appInfo": None, "merchantTrace": "t-9"},
        {"resultCode": "000100", "resultMsg": "no resource"},
        {"resultCode": "000002", "resultMsg": "missing orderId", "instanceId": None},
    ],
    "refreshInstance": [OK, {"resultCode": "000003", "resultMsg": "instance not found"}],
    "updateInstanceStatus": [OK, {"resultCode": "000003", "resultMsg": "instance not found"}],
    "releaseInstance": [OK, {"resultCode": "000003", "resultMsg": "instance not found"}],
    "upgradeInstance": [OK, {"resultCode": "000100", "resultMsg": "no resource"}],
    "queryInstance": [
        {**OK, "info": []},
        {
            **OK,
            "encryptType": "1",
            "info": [{"instanceId": "inst-001", "appInfo": APP_INFO}, {"instanceId": "inst-002"}],
        },
        {"resultCode": "000002", "resultMsg": "more than 100 ids"},
    ],
    "changeInstanceCheck": [OK, {"resultCode": "000005", "resultMsg": "cannot downgrade now"}],
    "getLicense": [{**OK, "license": "LIC-0001"}, {"resultCode": "000004", "resultMsg": "processing"}],
    "refreshLicense": [OK, {"resultCode": "000003", "resultMsg": "license not found"}],
    # §6.2: the answer table is not read (U47): the envelope alone is valid, a license typed
    "getLicenseAsync": [OK, {**OK, "license": "LIC-0001"}, {"resultCode": "000000"}],
    "expireLicense": [OK],
    "releaseLicense": [OK],
    "tenantSync": [OK],
    "applicationSync": [OK, {"resultCode": "000101", "resultMsg": "cannot decrypt clientSecret"}],
    "authSync": [OK, {"resultCode": "000001", "resultMsg": "bad signature"}],
    "singleOrgSync": [OK],
    "allOrgSync": [OK],
}
KIT = {"testFlag": 0, "timeStamp": "20220420114117642"}
"""Every Kit call's mandatory testFlag (Integer) and timeStamp (17 digits, UTC+8) (§7.1)."""
USER = {"userName": "alice", "name": "Alice", "orgCode": "org-001", "role": "admin", "enable": "true"}
"""An authSync user with the page's mandatory members (§7.4)."""
SYNC_REQUESTS: dict[str, list[dict[str, Any]]] = {
    "tenantSync": [
        {
            "instanceId": "inst-001",
            "orderId": "CS1906666666ABCDE",
            "tenantId": "t-001",
            "tenantCode": "acme",
            "name": "Acme 有限公司",
            "domainName": "https://acme.tenant.example",
            "flag": 1,
            "testFlag": 0,
            "timeStamp": "20220413093539534",
        },
        {
            "instanceId": "",
            "orderId": "",
            "tenantId": "t-001",
            "tenantCode": "acme",
            "name": "Acme",
            "domainName": "https://acme.tenant.example",
            "flag": 0,
            "testFlag": 1,
            "timeStamp": "20220413093539534",
        },
    ],
    "applicationSync": [
        {
            "instanceId": "inst-001",
            "tenantId": "t-001",
            "appId": "app-001",
            "name": "CRM",
            "clientId": "client-001",
            "clientSecret": "bXkgcnNhIGNpcGhlcnRleHQ=",
            "flag": 1,
            **KIT,
        }
    ],
    "authSync": [
        {
            "instanceId": "inst-001",
            "tenantId": "t-001",
            "appId": "app-001",
            "userList": [USER],
            "currentSyncTime": "20220420114117642",
            "flag": flag,
            **KIT,
        }
        for flag in (0, 1, 2, 3)
    ]
    + [
        {
            "instanceId": "",
            "tenantId": "t-001",
            "appId": "app-001",
            "flag": 1,
            "currentSyncTime": "20220420114117642",
            "userList": [
                {
                    "userName": "zhangsan01",
                    "name": "张三",
                    "position": "系统管理员",
                    "orgCode": "123456789",
                    "role": "admin",
                    "enable": "true",
                    "extension": {"entryDate": "2022-11-9", "employeeType": "4"},
                }
            ],
            **KIT,
        },
    ],
    "singleOrgSync": [
        {
            "instanceId": "inst-001",
            "tenantId": "t-001",
            "orgCode": "root",
            "orgName": "Acme",
            "flag": 1,
            **KIT,
        },
        {
            "instanceId": "inst-001",
            "tenantId": "t-001",
            "orgCode": "rd",
            "orgName": "研发部",
            "parentCode": "root",
            "flag": 2,
            **KIT,
        },
    ],
    "allOrgSync": [
        {
            "instanceId": "inst-001",
            "tenantId": "t-001",
            "orgInfo": json.dumps(
                [
                    {"orgCode": "root", "name": "Acme", "parentCode": ""},
                    {"orgCode": "rd", "name": "研发部", "parentCode": "root"},
                ],
                ensure_ascii=False,
            ),
            **KIT,
        }
    ],
}
MARKETPLACE_EXCHANGES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("queryOrder", "request"): [
        {"orderId": "MOCKPERIODYEARNEW"},
        {"orderId": "CS2207261447AUY4H", "orderLineId": "CS2207261447AUY4H-000001"},
    ],
    ("queryOrder", "response"): [
        {
            "resultCode": "MKT.0000",
            "resultMsg": "Success",
            "orderInfo": {
                "orderId": "CS2207261447AUY4H",
                "orderType": "NEW",
                "createTime": "20220726064736",
                "orderLine": [
                    {
                        "orderLineId": "CS2207261447AUY4H-000001",
                        "chargingMode": "PERIOD",
                        "periodType": "year",
                        "periodNumber": 1,
                        "expireTime": "20230726155959",
                        "currency": "CNY",
                        "productInfo": [{"productId": "00301-1", "skuCode": "sku-1", "linearValue": 10}],
                    }
                ],
                "buyerInfo": {"customerId": "68cbc86abc2018ab880d92f36422fa0e"},
                "extendParams": [{"name": "email", "value": "a@b.com"}],
            },
        },
        {"resultCode": "MKT.0100", "resultMsg": "Failure of input parameter"},
    ],
    ("usagePush", "request"): [
        {
            "usage_records": [
                {
                    "instance_id": "7f141bf1-aec8-4859-8323-fb3a8ad50721",
                    "record_time": "20220809T091000Z",
                    "begin_time": "20220809T080000Z",
                    "end_time": "20220809T090000Z",
                    "usage_value": "99",
                    "metering_sn": "sn-0001",
                },
                {
                    "instance_id": "7f141bf1-aec8-4859-8323-fb3a8ad50721",
                    "record_time": "20220809T101000Z",
                    "begin_time": "20220809T090000Z",
                    "end_time": "20220809T100000Z",
                    "usage_value": 0.5,
                    "metering_sn": "sn-0002",
                    "relate_pkg_instance": "pkg-001",
                },
                {
                    "instance_id": "7f141bf1-aec8-4859-8323-fb3a8ad50721",
                    "record_time": "20220809T111000Z",
                    "begin_time": "20220809T100000Z",
                    "end_time": "20220809T110000Z",
                    "usage_value": "0.0001",
                    "metering_sn": "sn-0003",
                },
            ]
        }
    ],
    ("usagePush", "response"): [
        {"error_code": "MKT.0000", "error_msg": "success"},
        {"error_code": "MKT.9004"},
    ],
}

# contracts/openapi/: the open APIs as docs/protocol.md §8 specifies them; the live MOCK answer [X3].
OPENAPI_EXCHANGES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("queryOrder", "request"): MARKETPLACE_EXCHANGES["queryOrder", "request"],
    ("queryOrder", "response"): [
        {
            "resultCode": "MKT.0000",
            "resultMsg": "Success",
            "orderInfo": {
                "orderId": "MOCKPERIODYEARNEW",
                "orderType": "NEW",
                "createTime": "20241121090846",
                "orderLine": [
                    {
                        "orderLineId": "MOCKPERIODYEARNEW-000001",
                        "chargingMode": "PERIOD",
                        "periodType": "year",
                        "periodNumber": 1,
                        "expireTime": "20251121235959",
                        "productInfo": [
                            {
                                "productId": "OFFI846204237451911168",
                                "skuCode": "0a4d1578-5295-46a7-92d4-7c803dccc51d",
                                "linearValue": 50,
                                "productName": "MOCK测试商品,测试规格,基础版,包周期",
                            }
                        ],
                        "extendParams": [
                            {"name": "emailDomainName", "value": "test.xxxx.com"},
                            {"name": "ip", "value": "127.0.0.1"},
                        ],
                        "currency": "100",
                        "currencyAfterDiscount": "100",
                    }
                ],
                "buyerInfo": {
                    "mobilePhone": "18688888888",
                    "email": None,
                    "customerId": "459bbbec25d24749b2eb83be37b602a8",
                    "customerName": "mock_user_01",
                    "customerRealName": "测试用户1",
                    "customerType": 0,
                    "userId": None,
                    "userName": None,
                },
                "extendParams": [],
            },
        },
        {"resultCode": "MKT.0100", "resultMsg": "an input parameter failed validation", "extra_info": "x"},
    ],
    ("usagePush", "request"): MARKETPLACE_EXCHANGES["usagePush", "request"],
    ("usagePush", "response"): [
        {"resultCode": "MKT.0000", "resultMsg": "Success"},
        {
            "resultCode": "MKT.9004",
            "resultMsg": "a record's begin time is outside the last 21 days",
            "extra_info": "x",
        },
    ],
}


LICENSE_ASYNC_REQUESTS: list[dict[str, Any]] = [
    {  # the §6.2 table, every row, values in the page's example style [S52]
        "activity": "getLicenseAsync",
        "instanceId": "inst-001",
        "effectiveTime": "2023-10-27 10:30:15 z",
        "expireTime": "2024-10-27 10:30:15 z",
        "eventId": "EV-0001",
        "deviceFingerprint": "FP-" + "a" * 1021,
        "testFlag": "0",
    },
    {  # the mandatory rows only (a one-time licence: no expireTime)
        "activity": "getLicenseAsync",
        "instanceId": "inst-002",
        "effectiveTime": "2023-10-27 10:30:15 UTC",
        "eventId": "EV-0002",
    },
]


def _valid_examples() -> list[tuple[str, str, str, dict[str, Any]]]:
    examples = []
    for name, requests in {**PRODUCE_REQUESTS, **LICENSE_REQUESTS}.items():
        examples += [("v2", name, "request", request) for request in requests]
        if V1_NAME.get(name, name) in PRODUCE_V1 or name in LICENSE:  # License: also the authToken form (A56)
            if name == "releaseInstance":  # V1: orderId mandatory, the subscription order (§5.5)
                requests = [{"orderId": "CS1906666666ABCDE"} | request for request in requests]
            examples += [("v1", V1_NAME.get(name, name), "request", _v1(request)) for request in requests]
    examples += [("v2", LICENSE_ASYNC, "request", request) for request in LICENSE_ASYNC_REQUESTS]
    for name, requests in V1_OWN.items():
        examples += [("v1", name, "request", {**request, **V1}) for request in requests]
    for name, answers in ANSWERS.items():
        family = "sync" if name in SYNC else "v2"
        examples += [(family, name, "response", answer) for answer in answers]
        if V1_NAME.get(name, name) in PRODUCE_V1 or name in LICENSE:
            examples += [("v1", V1_NAME.get(name, name), "response", answer) for answer in answers]
    for name in V1_OWN:
        examples += [("v1", name, "response", answer) for answer in ANSWERS["releaseInstance"]]
    for name, requests in SYNC_REQUESTS.items():
        examples += [("sync", name, "request", request) for request in requests]
    for (name, direction), values in OPENAPI_EXCHANGES.items():
        examples += [("openapi", name, direction, value) for value in values]
    return examples


VALID = _valid_examples()
assert len(IDS_100_CHARS) == 100


def test_every_contract_has_a_valid_example() -> None:
    assert sorted({(family, name, direction) for family, name, direction, _ in VALID}) == EXPECTED


@pytest.mark.parametrize(
    ("family", "name", "direction", "instance"),
    VALID,
    ids=[f"{f}/{n}.{d}#{i}" for i, (f, n, d, _) in enumerate(VALID)],
)
def test_valid_exchange_has_no_violation(family: str, name: str, direction: str, instance: Any) -> None:
    assert validate(instance, family, name, direction) == []


def test_section_2_vector_lacks_only_the_members_newinstance_requires() -> None:
    # The §14 body is a signing vector, not a page-shaped order: the null saasExtendParams, the
    # Chinese customerName (members the table does not have, ignored per U46) and testFlag
    # pass; only businessId, which §4.1 makes mandatory, is missing.
    assert validate(SECTION_2_BODY, "v2", "newInstance", "request") == [
        Violation("$.businessId", "required member 'businessId' is missing")
    ]


def test_section_14_kit_vector_lacks_only_what_the_authsync_page_adds() -> None:
    # The §14 x-sign body is a signing vector (U25), not a page-shaped authSync: its flag is a
    # string, and it lacks the mandatory testFlag, timeStamp, currentSyncTime and the user's
    # orgCode, role and enable (§7.1, §7.4, A39).
    paths = {v.path for v in validate(SECTION_4_BODY, "sync", "authSync", "request")}
    assert paths == {
        "$.flag",
        "$.testFlag",
        "$.timeStamp",
        "$.currentSyncTime",
        "$.userList[0].orgCode",
        "$.userList[0].role",
        "$.userList[0].enable",
    }


# --- invalid exchanges --------------------------------------------------------------------

INVALID: list[tuple[str, str, str, str, Any, str, str]] = [
    # (id, family, name, direction, instance, expected path, fragment of the message)
    (
        "missing required field",
        "v2",
        "newInstance",
        "request",
        {k: v for k, v in NEW_INSTANCE.items() if k != "orderId"},
        "$.orderId",
        "required member 'orderId' is missing",
    ),
    (
        "required field null",
        "v2",
        "newInstance",
        "request",
        {**NEW_INSTANCE, "orderId": None},
        "$.orderId",
        "not of type 'string'",
    ),
    (
        "activity of another call",
        "v2",
        "newInstance",
        "request",
        {**NEW_INSTANCE, "activity": "refreshInstance"},
        "$.activity",
        "'newInstance' was expected",
    ),
    (
        "wrong status enum",
        "v2",
        "updateInstanceStatus",
        "request",
        {"activity": "updateInstanceStatus", "instanceId": "inst-001", "status": "PAUSE"},
        "$.status",
        "is not one of ['FREEZE', 'UNFREEZE']",
    ),
    (
        "wrong scene enum",
        "v2",
        "refreshInstance",
        "request",
        {**PRODUCE_REQUESTS["refreshInstance"][0], "scene": "renewal"},
        "$.scene",
        "is not one of",
    ),
    (
        "expireTime with 13 digits",
        "v2",
        "refreshInstance",
        "request",
        {**PRODUCE_REQUESTS["refreshInstance"][0], "expireTime": "2026111423595"},
        "$.expireTime",
        "does not match '^[0-9]{14}$'",
    ),
    (
        "expireTime as ISO date",
        "v2",
        "getLicense",
        "request",
        {**LICENSE_REQUESTS["getLicense"][0], "expireTime": "2025-11-14T23:59:59"},
        "$.expireTime",
        "does not match",
    ),
    (
        "numeric testFlag",
        "v2",
        "newInstance",
        "request",
        {**NEW_INSTANCE, "testFlag": 1},
        "$.testFlag",
        "is not of type",
    ),
    (
        "101 ids in queryInstance",
        "v2",
        "queryInstance",
        "request",
        {"activity": "queryInstance", "instanceId": IDS_101},
        "$.instanceId",
        "is too long",
    ),
    (
        "empty id in queryInstance",
        "v2",
        "queryInstance",
        "request",
        {"activity": "queryInstance", "instanceId": "inst-001,,inst-002"},
        "$.instanceId",
        "does not match",
    ),
    (
        "v1 without authToken",
        "v1",
        "releaseInstance",
        "request",
        {"activity": "releaseInstance", "instanceId": "inst-001", "timeStamp": "20231114221320000"},
        "$.authToken",
        "required member 'authToken' is missing",
    ),
    (
        "v1 timeStamp in milliseconds since the epoch",
        "v1",
        "releaseInstance",
        "request",
        {**_v1({"activity": "releaseInstance", "instanceId": "inst-001"}), "timeStamp": "1700000000000"},
        "$.timeStamp",
        "does not match '^[0-9]{17}$'",
    ),
    (
        "v1 plaintext e-mail",
        "v1",
        "newInstance",
        "request",
        {**_v1(NEW_INSTANCE), "email": "buyer@example.com"},
        "$.email",
        "does not match",
    ),
    (
        "resultCode as number",
        "v2",
        "refreshInstance",
        "response",
        {"resultCode": 0, "resultMsg": "success."},
        "$.resultCode",
        "0 is not of type 'string'",
    ),
    (
        "resultCode of five digits",
        "v1",
        "upgrade",
        "response",
        {"resultCode": "00000", "resultMsg": "success."},
        "$.resultCode",
        "does not match '^[0-9]{6}$'",
    ),
    (
        "code not on the published list",
        "v2",
        "newInstance",
        "response",
        {"resultCode": "000101", "resultMsg": "not a produce code"},
        "$.resultCode",
        "is not one of",
    ),
    (
        "000101 outside applicationSync",
        "sync",
        "tenantSync",
        "response",
        {"resultCode": "000101", "resultMsg": "secret"},
        "$.resultCode",
        "is not one of",
    ),
    (
        "resultMsg over 255 characters (it is optional: docs/protocol.md §3.1)",
        "sync",
        "allOrgSync",
        "response",
        {"resultCode": "000000", "resultMsg": "m" * 256},
        "$.resultMsg",
        "is too long",
    ),
    (
        "newInstance success without instanceId",
        "v2",
        "newInstance",
        "response",
        {**OK, "appInfo": APP_INFO},
        "$.instanceId",
        "required member 'instanceId' is missing (required on success)",
    ),
    (
        "newInstance success with null instanceId",
        "v1",
        "newInstance",
        "response",
        {**OK, "instanceId": None},
        "$.instanceId",
        "None is not of type 'string'",
    ),
    (
        "instanceId of 65 characters",
        "v2",
        "newInstance",
        "response",
        {**OK, "instanceId": "i" * 65},
        "$.instanceId",
        "is too long",
    ),
    (
        "empty instanceId",
        "v2",
        "newInstance",
        "response",
        {**OK, "instanceId": ""},
        "$.instanceId",
        "should be non-empty",
    ),
    (
        "encryptType 3",
        "v2",
        "newInstance",
        "response",
        {**OK, "instanceId": "inst-001", "encryptType": "3"},
        "$.encryptType",
        "is not one of",
    ),
    (
        "password as a number",
        "v2",
        "newInstance",
        "response",
        {**OK, "instanceId": "inst-001", "appInfo": {**APP_INFO, "password": 123456}},
        "$.appInfo.password",
        "is not of type",
    ),
    (
        "queryInstance entry without instanceId",
        "v2",
        "queryInstance",
        "response",
        {**OK, "info": [{"instanceId": "inst-001"}, {"appInfo": APP_INFO}]},
        "$.info[1].instanceId",
        "required member 'instanceId' is missing",
    ),
    (
        "getLicense success without license",
        "v2",
        "getLicense",
        "response",
        OK,
        "$.license",
        "required member 'license' is missing (required on success)",
    ),
    (
        "tenantSync flag 2 (modify is authSync's and singleOrgSync's)",
        "sync",
        "tenantSync",
        "request",
        {**SYNC_REQUESTS["tenantSync"][0], "flag": 2},
        "$.flag",
        "is not one of [0, 1]",
    ),
    (
        "Kit flag as a string",
        "sync",
        "authSync",
        "request",
        {**SYNC_REQUESTS["authSync"][0], "flag": "1"},
        "$.flag",
        "is not of type 'integer'",
    ),
    (
        "Kit without timeStamp",
        "sync",
        "singleOrgSync",
        "request",
        {k: v for k, v in SYNC_REQUESTS["singleOrgSync"][0].items() if k != "timeStamp"},
        "$.timeStamp",
        "required member 'timeStamp' is missing",
    ),
    (
        "sync user without userName",
        "sync",
        "authSync",
        "request",
        {**SYNC_REQUESTS["authSync"][0], "userList": [{"name": "Alice"}]},
        "$.userList[0].userName",
        "required member 'userName' is missing",
    ),
    (
        "sync userList as JSON text",
        "sync",
        "authSync",
        "request",
        {**SYNC_REQUESTS["authSync"][0], "userList": json.dumps([USER])},
        "$.userList",
        "is not of type 'array'",
    ),
    (
        "allOrgSync orgInfo as an array, not a JSON string",
        "sync",
        "allOrgSync",
        "request",
        {**SYNC_REQUESTS["allOrgSync"][0], "orgInfo": [{"orgCode": "root", "name": "Acme"}]},
        "$.orgInfo",
        "is not of type 'string'",
    ),
    (
        "queryOrder without orderId",
        "openapi",
        "queryOrder",
        "request",
        {"orderLineId": "CS2207261447AUY4H-000001"},
        "$.orderId",
        "required member 'orderId' is missing",
    ),
    (
        "queryOrder success without orderInfo",
        "openapi",
        "queryOrder",
        "response",
        {"resultCode": "MKT.0000", "resultMsg": "Success"},
        "$.orderInfo",
        "required member 'orderInfo' is missing (required on success)",
    ),
    (
        "usage value zero",
        "openapi",
        "usagePush",
        "request",
        {
            "usage_records": [
                {
                    **MARKETPLACE_EXCHANGES["usagePush", "request"][0]["usage_records"][0],
                    "usage_value": "0.0",
                }
            ]
        },
        "$.usage_records[0].usage_value",
        "is not valid under any of the given schemas",
    ),
    (
        "usage time without the T and Z",
        "openapi",
        "usagePush",
        "request",
        {
            "usage_records": [
                {
                    **MARKETPLACE_EXCHANGES["usagePush", "request"][0]["usage_records"][0],
                    "begin_time": "20220809080000",
                }
            ]
        },
        "$.usage_records[0].begin_time",
        "does not match",
    ),
    (
        "no usage records",
        "openapi",
        "usagePush",
        "request",
        {"usage_records": []},
        "$.usage_records",
        "should be non-empty",
    ),
    (
        "openapi queryOrder failure carrying orderInfo (U34)",
        "openapi",
        "queryOrder",
        "response",
        {"resultCode": "MKT.0100", "resultMsg": "no", "orderInfo": {}},
        "$",
        "should not be valid under",
    ),
    (
        "openapi queryOrder currency as a currency code",
        "openapi",
        "queryOrder",
        "response",
        {
            "resultCode": "MKT.0000",
            "resultMsg": "Success",
            "orderInfo": {
                "orderId": "CS1",
                "orderType": "NEW",
                "createTime": "20220726064736",
                "orderLine": [{"orderLineId": "CS1-000001", "chargingMode": "PERIOD", "currency": "CNY"}],
            },
        },
        "$.orderInfo.orderLine[0].currency",
        "does not match",
    ),
    (
        "openapi usagePush answer in error_code style (on no page)",
        "openapi",
        "usagePush",
        "response",
        {"error_code": "MKT.0000", "error_msg": "success"},
        "$.resultCode",
        "required member 'resultCode' is missing",
    ),
    (
        "openapi usage value longer than 17 characters (A46)",
        "openapi",
        "usagePush",
        "request",
        {
            "usage_records": [
                {
                    **MARKETPLACE_EXCHANGES["usagePush", "request"][0]["usage_records"][0],
                    "usage_value": "1" * 18,
                }
            ]
        },
        "$.usage_records[0].usage_value",
        "is not valid under any of the given schemas",
    ),
    (
        "answer that is not an object",
        "v2",
        "releaseLicense",
        "response",
        ["000000"],
        "$",
        "is not of type 'object'",
    ),
]


@pytest.mark.parametrize(
    ("family", "name", "direction", "instance", "path", "fragment"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_exchange_is_reported_at_the_right_path(
    family: str, name: str, direction: str, instance: Any, path: str, fragment: str
) -> None:
    violations = validate(instance, family, name, direction)
    assert any(v.path == path and fragment in v.message for v in violations), violations
    assert all(isinstance(v, Violation) for v in violations)


def test_101_ids_is_reported_briefly() -> None:
    (violation,) = validate(
        {"activity": "queryInstance", "instanceId": IDS_101}, "v2", "queryInstance", "request"
    )
    assert len(violation.message) < 160
    assert "…" in violation.message


def test_violations_are_sorted_and_not_repeated() -> None:
    violations = validate({"activity": "upgrade"}, "v1", "upgrade", "request")
    paths = [v.path for v in violations]
    assert paths == ["$.authToken", "$.instanceId", "$.orderId", "$.productId", "$.skuCode", "$.timeStamp"]


def test_odd_member_names_are_quoted_in_the_path() -> None:
    answer = {**OK, "info": [{"instanceId": "inst-001", "appInfo": {"frontEndUrl": 1}}]}
    assert validate(answer, "v2", "queryInstance", "response")[0].path == "$.info[0].appInfo.frontEndUrl"
    assert contracts._json_path(["a b", 0, "c"]) == '$["a b"][0].c'


# --- the loader's API ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "name", "direction", "hint"),
    [
        ("v1", "getLicenseAsync", "request", "family 'v1' has expireInstance, expireLicense"),
        ("license", "getLicense", "request", "use one of openapi, sync, v1, v2"),
        ("v2", "newInstance", "answer", "use one of request, response"),
        ("v2", "newinstance", "request", "no contract v2/newinstance.request"),
        ("v2", "../v1/newInstance", "request", "no contract"),
    ],
)
def test_unknown_contract_is_a_key_error_with_a_readable_message(
    family: str, name: str, direction: str, hint: str
) -> None:
    with pytest.raises(UnknownContract) as raised:
        schema_for(family, name, direction)
    assert isinstance(raised.value, KeyError)
    assert hint in str(raised.value)
    with pytest.raises(UnknownContract):
        validate({}, family, name, direction)


def test_schema_for_returns_a_copy() -> None:
    schema = schema_for("v2", "newInstance", "response")
    schema["required"].append("somethingElse")
    assert "somethingElse" not in schema_for("v2", "newInstance", "response")["required"]
    assert validate({"resultCode": "000001", "resultMsg": "x"}, "v2", "newInstance", "response") == []


@pytest.mark.parametrize("compiled", ["_fast_validator", "_validator"])
def test_validators_are_compiled_once(compiled: str) -> None:
    """The compiled validator answers every call; jsonschema is asked only to explain a failure."""
    bad = {"resultMsg": 1}
    validate(bad, "v2", "releaseLicense", "response")
    before = getattr(contracts, compiled).cache_info()
    validate(OK, "v2", "releaseLicense", "response")
    validate(bad, "v2", "releaseLicense", "response")
    after = getattr(contracts, compiled).cache_info()
    calls = 2 if compiled == "_fast_validator" else 1
    assert (after.hits, after.misses) == (before.hits + calls, before.misses)


def test_a_value_conforms_only_where_jsonschema_says_so() -> None:
    """What the compiled validator cannot read goes to jsonschema, which decides."""
    assert validate({1: "x", **OK}, "v2", "releaseLicense", "response") == []
    assert validate((), "v2", "releaseLicense", "response")


def test_violation_is_frozen() -> None:
    violation = Violation("$.a", "m")
    with pytest.raises(AttributeError):
        violation.path = "$.b"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"eventId": None}, "$.eventId"),
        ({"instanceId": "i" * 65}, "$.instanceId"),
        ({"effectiveTime": "20231027103015"}, "$.effectiveTime"),
        ({"deviceFingerprint": "f" * 1025}, "$.deviceFingerprint"),
        ({"testFlag": "2"}, "$.testFlag"),
    ],
)
def test_get_license_async_request_enforces_its_table(change: dict[str, Any], path: str) -> None:
    """§6.2's rows [S52]: a missing mandatory row, an overlong value, another time style, a
    testFlag outside 1/0 each break the contract."""
    request = {**LICENSE_ASYNC_REQUESTS[0], **change}
    request = {key: value for key, value in request.items() if not (key == "eventId" and value is None)}
    assert any(v.path == path for v in validate(request, "v2", LICENSE_ASYNC, "request"))
