//! A classic BPF interpreter for the tests: runs a program over a packet
//! the way the kernel's `sk_run_filter` does for a socket filter (a load
//! beyond the packet's end ends the program with 0, "drop"), so the
//! generated program and libpcap's can be compared by their verdicts.

use libc::sock_filter;

/// Runs `program` over `packet`; returns the `ret` value (0: drop, else
/// bytes to keep). Panics on an opcode this interpreter does not know
/// (a test failure, never a wrong verdict).
pub fn run(program: &[sock_filter], packet: &[u8]) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    let load = |at: u32, size: usize| -> Option<u32> {
        let at = at as usize;
        let bytes = packet.get(at..at.checked_add(size)?)?;
        Some(bytes.iter().fold(0u32, |v, &b| (v << 8) | u32::from(b)))
    };
    loop {
        let ins = program.get(pc).expect("the program runs off its end");
        pc += 1;
        let code = u32::from(ins.code);
        let k = ins.k;
        let class = code & 0x07;
        match class {
            c if c == libc::BPF_LD || c == libc::BPF_LDX => {
                let size = match code & 0x18 {
                    s if s == libc::BPF_W => 4,
                    s if s == libc::BPF_H => 2,
                    _ => 1,
                };
                let value = match code & 0xe0 {
                    m if m == libc::BPF_ABS => load(k, size),
                    m if m == libc::BPF_IND => load(x.wrapping_add(k), size),
                    m if m == libc::BPF_IMM => Some(k),
                    m if m == libc::BPF_LEN => Some(packet.len() as u32),
                    m if m == libc::BPF_MEM => Some(mem[k as usize]),
                    m if m == libc::BPF_MSH => load(k, 1).map(|b| (b & 0xf) * 4),
                    m => panic!("unknown load mode {m:#x}"),
                };
                let Some(value) = value else { return 0 };
                if c == libc::BPF_LD {
                    a = value;
                } else {
                    x = value;
                }
            }
            c if c == libc::BPF_ST => mem[k as usize] = a,
            c if c == libc::BPF_STX => mem[k as usize] = x,
            c if c == libc::BPF_ALU => {
                let operand = if code & 0x08 == libc::BPF_X { x } else { k };
                a = match code & 0xf0 {
                    o if o == libc::BPF_ADD => a.wrapping_add(operand),
                    o if o == libc::BPF_SUB => a.wrapping_sub(operand),
                    o if o == libc::BPF_MUL => a.wrapping_mul(operand),
                    o if o == libc::BPF_DIV => a.checked_div(operand).unwrap_or(0),
                    o if o == libc::BPF_MOD => a.checked_rem(operand).unwrap_or(0),
                    o if o == libc::BPF_AND => a & operand,
                    o if o == libc::BPF_OR => a | operand,
                    o if o == libc::BPF_XOR => a ^ operand,
                    o if o == libc::BPF_LSH => a.checked_shl(operand).unwrap_or(0),
                    o if o == libc::BPF_RSH => a.checked_shr(operand).unwrap_or(0),
                    o if o == libc::BPF_NEG => a.wrapping_neg(),
                    o => panic!("unknown alu op {o:#x}"),
                };
            }
            c if c == libc::BPF_JMP => {
                let operand = if code & 0x08 == libc::BPF_X { x } else { k };
                let taken = match code & 0xf0 {
                    o if o == libc::BPF_JA => {
                        pc += k as usize;
                        continue;
                    }
                    o if o == libc::BPF_JEQ => a == operand,
                    o if o == libc::BPF_JGT => a > operand,
                    o if o == libc::BPF_JGE => a >= operand,
                    o if o == libc::BPF_JSET => a & operand != 0,
                    o => panic!("unknown jump {o:#x}"),
                };
                pc += usize::from(if taken { ins.jt } else { ins.jf });
            }
            c if c == libc::BPF_RET => {
                return match code & 0x18 {
                    r if r == libc::BPF_A => a,
                    _ => k,
                };
            }
            c if c == libc::BPF_MISC => {
                if code & 0xf8 == libc::BPF_TXA {
                    a = x;
                } else {
                    x = a;
                }
            }
            c => panic!("unknown class {c:#x}"),
        }
    }
}
