//! Golden bytes: the persisted encoding of a fixed AgentRecord, a fixed
//! Transfer and a booking of it. If rkyv (or its pinned format features) or a record's layout
//! changes, these bytes change and this test fails loudly — before a release
//! writes files older builds cannot read. Changing a record needs a new
//! FORMAT_VERSION and a migration, not a new golden value.

use jecp_hub::ledger::{
    AccountId, ChargeId, ChargeMemo, ChargeMethod, Transfer, TransferId, TransferKind,
};
use jecp_hub::money::Micros;
use jecp_hub::records::AgentRecord;
use jecp_hub::store::records::{BookingRecord, FORMAT_VERSION, TransferRecord, decode, encode};

fn fixed_agent() -> AgentRecord {
    AgentRecord {
        agent_id: "jecp_ag_0123456789abcdefghijklmn".into(),
        wallet_account: 1_000,
        name: "golden".into(),
        agent_type: Some("bot".into()),
        description: None,
        homepage: Some("https://example.com".into()),
        capabilities: vec!["text".into(), "pdf".into()],
        referred_by: None,
        key_hash: [0xab; 32],
        previous_key_hash: Some([0x01; 32]),
        previous_key_valid_until_s: Some(1_700_000_600),
        rotations_s: vec![1_700_000_000],
        created_at_s: 1_699_999_999,
        frozen: false,
        tier_floor: Some(2),
        rate_limit_rpm: Some(600),
    }
}

fn fixed_transfer() -> Transfer {
    Transfer {
        id: TransferId((1_700_000_000_123u128 << 64) | 7),
        debit: AccountId(1_000),
        credit: AccountId::HUB_PROVIDER,
        amount: Micros::new(4_250).unwrap(),
        kind: TransferKind::ProviderShare,
        charge: Some(ChargeId((1_700_000_000_123u128 << 64) | 6)),
        timestamp_ms: 1_700_000_000_123,
        reference: None,
        memo: Some(ChargeMemo {
            agent_id: "jecp_ag_0123456789abcdefghijklmn".into(),
            capability: "text".into(),
            action: "count".into(),
            request_id: "req-42".into(),
            method: ChargeMethod::Wallet,
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const AGENT_GOLDEN: &str = concat!(
    "016a6563705f61675f303132333435363738396162636465666768696a6b6c6d6e68747470733a2f2f6578616d706c652e636f6d0074657874ffffffff",
    "706466ffffffffff0000000000f1536500000000a0000000b0ffffffe803000000000000676f6c64656effff01000000626f74ffffffffff0000000000000000",
    "0000000001000000930000009cffffffa8ffffff02000000000000000000000000000000abababababababababababababababababababababababababababab",
    "abababab01010101010101010101010101010101010101010101010101010101010101010100000000000000010000000000000058f353650000000050ffffff",
    "01000000fff053650000000000010200010000005802000000000000"
);
const TRANSFER_GOLDEN: &str = concat!(
    "016a6563705f61675f303132333435363738396162636465666768696a6b6c6d6e07000000000000007b68e5cf8b010000e80300000000000005000000000000",
    "009a1000000000000002000000000000000100000000000000000000000000000006000000000000007b68e5cf8b0100007b68e5cf8b01000000000000000000",
    "000000000001000000a000000078ffffff74657874ffffffff636f756e74ffffff7265712d3432ffff0100000000000000"
);

#[test]
fn agent_record_bytes_are_stable() {
    let bytes = encode(&fixed_agent()).unwrap();
    assert_eq!(bytes[0], FORMAT_VERSION);
    assert_eq!(
        hex(&bytes),
        AGENT_GOLDEN,
        "AgentRecord archive format changed"
    );
    assert_eq!(
        decode::<AgentRecord>("agents", &"golden", &bytes).unwrap(),
        fixed_agent()
    );
}

#[test]
fn transfer_record_bytes_are_stable() {
    let bytes = encode(&TransferRecord::from(&fixed_transfer())).unwrap();
    assert_eq!(
        hex(&bytes),
        TRANSFER_GOLDEN,
        "TransferRecord archive format changed"
    );
    let decoded: TransferRecord = decode("transfers", &"golden", &bytes).unwrap();
    assert_eq!(decoded.into_transfer().unwrap(), fixed_transfer());
}

const BOOKING_GOLDEN: &str = concat!(
    "016a6563705f61675f303132333435363738396162636465666768696a6b6c6d6e07000000000000007b68e5cf8b010000e80300000000000005000000000000",
    "009a1000000000000002000000000000000100000000000000000000000000000006000000000000007b68e5cf8b0100007b68e5cf8b01000000000000000000",
    "000000000001000000a000000078ffffff74657874ffffffff636f756e74ffffff7265712d3432ffff010000000000000070ffffff01000000",
);

#[test]
fn booking_record_bytes_are_stable() {
    let legs = [fixed_transfer()];
    let bytes = encode(&BookingRecord::of(&legs)).unwrap();
    assert_eq!(
        hex(&bytes),
        BOOKING_GOLDEN,
        "BookingRecord archive format changed"
    );
    let decoded: BookingRecord = decode("bookings", &"golden", &bytes).unwrap();
    assert_eq!(decoded.into_transfers(legs[0].id.0).unwrap(), legs.to_vec());
}
