"""The test vectors of protocol.md (§2-§5), written down once for every test that needs them."""

KEY = "koosim-test-key"

T = "1700000000000"

N = "0123456789abcdef0123456789abcdef"

V2_BODY = {
    "activity": "newInstance",
    "orderId": "CS1906666666ABCDE",
    "orderLineId": "CS1906666666ABCDE-000001",
    "customerName": "测试客户",
    "testFlag": "1",
    "saasExtendParams": None,
}

V2_CANONICAL = (
    '{"activity":"newInstance","customerName":"测试客户","orderId":"CS1906666666ABCDE",'
    '"orderLineId":"CS1906666666ABCDE-000001","testFlag":"1"}'
)

V2_INNER = "2f2728dab50185848e90664a12cd5d276df428744f3e85489a48eba27aad74d6"

V2_SIGNATURE = "d65b900e6071b346fabc310b96db732854d64281745796283d24791a500505c7"

V1_PARAMS = {
    "activity": "newInstance",
    "businessId": "61e834ba-7b97-4418-b8f7-e5345137278c",
    "customerId": "68cbc86abc2018ab880d92f36422fa0e",
    "orderId": "CS1906666666ABCDE",
    "timeStamp": "20231114221320000",
    "email": "abc+/=",
    "testFlag": "1",
}

V1_MESSAGE = (
    "activity=newInstance&businessId=61e834ba-7b97-4418-b8f7-e5345137278c"
    "&customerId=68cbc86abc2018ab880d92f36422fa0e&email=abc+/=&orderId=CS1906666666ABCDE"
    "&testFlag=1&timeStamp=20231114221320000"
)

V1_TOKEN = "eVUwTfvWeeFmdlI7w71kWM2HgB4+Rc3UalMe7R3sVPg="

V1_BODY = b'{"resultCode":"000000","resultMsg":"success.","instanceId":"inst-001"}'

V1_BODY_SIGN = 'sign_type="HMAC-SHA256", signature="bNBIjOlWvuxJA0fEM9HP4YlLJo5i5oHEcK5m7wPMQ/Y="'

SYNC_BODY = {
    "instanceId": "inst-001",
    "tenantId": "t-001",
    "appId": "app-001",
    "userList": [{"userName": "alice", "name": "Alice"}],
    "flag": "1",
}

SYNC_CANONICAL = (
    '{"appId":"app-001","flag":"1","instanceId":"inst-001","tenantId":"t-001",'
    '"userList":[{"userName":"alice","name":"Alice"}]}'
)

SYNC_SIGN = "279cfac6821b62862fca61ace19020748cb2363cefb714cfde3a57f32483b1c6"

AES128_KEY = "b2d1cedbab8bd3760e39acfd6efdeb2b"

AES256_KEY = "b2d1cedbab8bd3760e39acfd6efdeb2b2c6412895833c6892bf0ac6fcc78cbae"

PLAINTEXT = "Pa55word!密"

IV = "0123456789abcdef"

CIPHERTEXT_AES128 = "0123456789abcdefwY6Pgfqxrl//dezrq9KbkA=="

CIPHERTEXT_AES256 = "0123456789abcdefo7GlH2Q2VOmlWWuCbkT8dw=="
