//! Property tests of the SPA decoder on hostile input: arbitrary bytes and
//! arbitrary base64-alphabet strings never panic, and the decoder's heap use
//! stays under a bound derived from the packet size limit.
//!
//! How the allocation bound is checked: this test binary installs a counting
//! global allocator that tracks, per thread (const thread-locals, which never
//! allocate), the bytes live during a `verify` call and their peak, so tests
//! running in parallel threads do not disturb each other's counts. The
//! bound is `HEAP_BOUND` below; a decoder that allocated in proportion to
//! its input would break it on the 64 KiB packet, which must cost nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;

use portknock::spa::{
    AccessConfOptions, MAX_PACKET_LEN, ReplayCache, ServerPolicy, SpaRequest, Verdict, Verifier,
    encode, parse_access_conf, parse_fwknoprc,
};
use proptest::prelude::*;

struct Counting;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread (may go negative).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// Highest `LIVE` since the last reset.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only adds counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size() as isize;
        let _ = LIVE.try_with(|l| {
            l.set(l.get() + size);
            let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
        });
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let size = layout.size() as isize;
        let _ = LIVE.try_with(|l| l.set(l.get() - size));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap bound for one `verify` call beyond what was live before it: the
/// decoder holds at most a few copies of a payload of at most
/// `MAX_PACKET_LEN` bytes (the prefixed text, the decoded blob, the
/// plaintext, its fields) plus fixed-size digests. Measured peak for a
/// 380-byte accepted packet: about 1.2 KiB.
const HEAP_BOUND: usize = 4 * MAX_PACKET_LEN + 2048;
const NOW: u64 = 1_795_470_431;
const CONF: &str = "SOURCE ANY
KEY_BASE64 kB+G5+KiLS8N2x64DYM+VuPU+Gj7A7uITpF9Y4Ozqms=
HMAC_KEY_BASE64 vxdRyChqWMLurmUWJPUNWLPlMI57H9zvx/Gzdt7sS0FtjArdSOTNzBiw9D3HSVKV64jQv4fCM0BHc9VV3SCrjg==

SOURCE ANY
KEY shortpw
ENCRYPTION_MODE legacy
";

fn verifier() -> Verifier {
    let stanzas = parse_access_conf(
        CONF,
        AccessConfOptions {
            allow_missing_hmac: true,
        },
    )
    .unwrap()
    .stanzas;
    Verifier::new(stanzas, ServerPolicy::default())
}

/// Runs `verify` and returns (verdict, peak extra heap bytes during it).
fn measured(v: &Verifier, packet: &[u8], cache: &mut ReplayCache) -> (Verdict, usize) {
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let verdict = v.verify(packet, src, NOW, cache);
    let peak = PEAK.with(Cell::get) - base;
    (verdict, usize::try_from(peak).unwrap_or(0))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(packet in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let v = verifier();
        let mut cache = ReplayCache::in_memory(120);
        let (verdict, peak) = measured(&v, &packet, &mut cache);
        prop_assert!(matches!(verdict, Verdict::Reject(_)));
        prop_assert!(peak <= HEAP_BOUND, "peak {peak} bytes for a {}-byte packet", packet.len());
    }

    #[test]
    fn arbitrary_base64_strings_never_panic_and_stay_bounded(packet in "[A-Za-z0-9+/=]{100,1600}") {
        let v = verifier();
        let mut cache = ReplayCache::in_memory(120);
        let (verdict, peak) = measured(&v, packet.as_bytes(), &mut cache);
        prop_assert!(matches!(verdict, Verdict::Reject(_)));
        prop_assert!(peak <= HEAP_BOUND, "peak {peak} bytes for a {}-byte packet", packet.len());
    }

    /// A real packet with bytes flipped: rejected, never panics.
    #[test]
    fn mutated_real_packets_are_rejected(pos in 0usize..400, byte in any::<u8>()) {
        let v = verifier();
        let req = SpaRequest::new("root", "127.0.0.2".parse().unwrap(), vec!["tcp/22".parse().unwrap()], NOW);
        let mut packet = encode(&req, &v.stanzas()[0].keys).unwrap().into_bytes();
        let pos = pos % packet.len();
        prop_assume!(packet[pos] != byte);
        packet[pos] = byte;
        let mut cache = ReplayCache::in_memory(120);
        let (verdict, peak) = measured(&v, &packet, &mut cache);
        prop_assert!(matches!(verdict, Verdict::Reject(_)));
        prop_assert!(peak <= HEAP_BOUND);
    }

    /// Config parsers on arbitrary text: an error or a value, never a panic.
    #[test]
    fn parsers_never_panic(text in "(SOURCE|KEY|HMAC_KEY|OPEN_PORTS|\\[a\\]|ACCESS|ALLOW_IP|#|[A-Z_]{1,12})[ \t]{0,2}[ -~]{0,40}(\n[A-Z_ \\[\\]a-z0-9/,.=+]{0,40}){0,8}") {
        let _ = parse_access_conf(&text, AccessConfOptions::default());
        let _ = parse_access_conf(&text, AccessConfOptions { allow_missing_hmac: true });
        if let Ok(rc) = parse_fwknoprc(&text) {
            for name in rc.names() {
                let _ = rc.stanza(name);
            }
        }
    }
}

/// The bound holds for the largest accepted packet and a huge one is
/// refused before anything is allocated.
#[test]
fn accepted_and_oversized_packets_within_bound() {
    let v = verifier();
    let mut cache = ReplayCache::in_memory(120);
    let ports = (1..=10)
        .map(|p| format!("tcp/{}", 10000 + p).parse().unwrap())
        .collect();
    let req = SpaRequest::new("root", "127.0.0.2".parse().unwrap(), ports, NOW);
    let packet = encode(&req, &v.stanzas()[0].keys).unwrap();
    let (verdict, peak) = measured(&v, packet.as_bytes(), &mut cache);
    assert!(matches!(verdict, Verdict::Accept(_)), "{verdict:?}");
    assert!(peak <= HEAP_BOUND, "peak {peak}");
    let huge = vec![b'A'; 64 * 1024];
    let (verdict, peak) = measured(&v, &huge, &mut cache);
    assert!(matches!(verdict, Verdict::Reject(_)));
    assert_eq!(
        peak,
        0,
        "an oversized packet ({} > {MAX_PACKET_LEN}) must be refused without allocating",
        huge.len()
    );
}

/// The counter itself works: a known allocation is seen.
#[test]
fn counter_sees_allocations() {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let v = std::hint::black_box(vec![0u8; 100_000]);
    let peak = PEAK.with(Cell::get) - base;
    drop(v);
    assert!(peak >= 100_000, "counting allocator saw only {peak} bytes");
}
