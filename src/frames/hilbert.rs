//! The Hilbert curve on one square of side `2^m`, driven by state tables that consume four
//! curve levels (eight bits of the index, four bits of each coordinate) per lookup.
//!
//! The curve is the classic one (as in Wikipedia's `d2xy`): it starts at `(0, 0)` and ends at
//! `(side - 1, 0)`. Joining two such squares side by side therefore gives one continuous curve
//! on a 2:1 frame, which [`super::layout`] relies on.
//!
//! A *state* is one of the eight symmetries of the square (swap the axes, then mirror x and/or
//! y); only four are reachable from the identity, but indexing by all eight keeps the tables
//! simple. The tables are computed at compile time from the one-level rule, so there is no
//! hand-typed table to get wrong.
//!
//! Every function takes the square's exponent `m`, which the layout keeps at most
//! [`MAX_SIDE_BITS`]; larger values are clamped so that no shift can overflow.

/// Largest square exponent: sides up to `2^31`, indices up to `4^31`, both fit their types.
pub(crate) const MAX_SIDE_BITS: u32 = 31;
/// Levels of the curve consumed per table lookup.
pub(crate) const LEVELS_PER_STEP: u32 = 4;
/// Cells covered by one table block: `4^LEVELS_PER_STEP`.
pub(crate) const BLOCK_CELLS: usize = 1 << (2 * LEVELS_PER_STEP);

/// Identity symmetry.
const IDENTITY: u8 = 0;
/// Transpose (swap x and y).
const TRANSPOSE: u8 = 1;
/// Anti-transpose: `(x, y) -> (1 - y, 1 - x)` on one level.
const ANTI_TRANSPOSE: u8 = 0b111;

/// Quadrant visited by each base-curve digit, as `(x, y)` bits.
const BASE_QUADRANT: [(u32, u32); 4] = [(0, 0), (0, 1), (1, 1), (1, 0)];
/// Symmetry of the sub-curve inside each base quadrant.
const BASE_CHILD: [u8; 4] = [TRANSPOSE, IDENTITY, IDENTITY, ANTI_TRANSPOSE];

/// Applies symmetry `g` to a point of a square whose largest coordinate is `max`.
const fn apply(g: u8, x: u32, y: u32, max: u32) -> (u32, u32) {
    let (mut a, mut b) = if g & 1 != 0 { (y, x) } else { (x, y) };
    if g & 2 != 0 {
        a = max - a;
    }
    if g & 4 != 0 {
        b = max - b;
    }
    (a, b)
}

/// The symmetry equal to "`h`, then `g`", found by trying all eight on the unit square.
const fn compose(g: u8, h: u8) -> u8 {
    let mut k = 0u8;
    while k < 8 {
        let mut same = true;
        let mut p = 0u32;
        while p < 4 {
            let (x, y) = (p & 1, p >> 1);
            let (hx, hy) = apply(h, x, y, 1);
            let want = apply(g, hx, hy, 1);
            let got = apply(k, x, y, 1);
            if want.0 != got.0 || want.1 != got.1 {
                same = false;
            }
            p += 1;
        }
        if same {
            return k;
        }
        k += 1;
    }
    // Unreachable: the eight symmetries form a group, so some k always matches.
    0
}

/// Forward table: `[state][8 index bits]` → `x (4 bits) | y (4 bits) << 4 | next state << 8`.
pub(crate) static FORWARD: [[u16; BLOCK_CELLS]; 8] = build_forward();
/// Inverse table: `[state][x (4 bits) | y (4 bits) << 4]` → `index bits (8) | next state << 8`.
pub(crate) static INVERSE: [[u16; BLOCK_CELLS]; 8] = build_inverse();

const fn build_forward() -> [[u16; BLOCK_CELLS]; 8] {
    let mut table = [[0u16; BLOCK_CELLS]; 8];
    let mut state = 0usize;
    while state < 8 {
        let mut chunk = 0usize;
        while chunk < BLOCK_CELLS {
            let mut g = state as u8;
            let (mut x, mut y) = (0u32, 0u32);
            let mut level = 0;
            while level < LEVELS_PER_STEP {
                let digit = (chunk >> (2 * (LEVELS_PER_STEP - 1 - level))) & 3;
                let (qx, qy) = BASE_QUADRANT[digit];
                let (bx, by) = apply(g, qx, qy, 1);
                x = (x << 1) | bx;
                y = (y << 1) | by;
                g = compose(g, BASE_CHILD[digit]);
                level += 1;
            }
            table[state][chunk] = (x | (y << 4) | ((g as u32) << 8)) as u16;
            chunk += 1;
        }
        state += 1;
    }
    table
}

const fn build_inverse() -> [[u16; BLOCK_CELLS]; 8] {
    let forward = build_forward();
    let mut table = [[0u16; BLOCK_CELLS]; 8];
    let mut state = 0usize;
    while state < 8 {
        let mut chunk = 0usize;
        while chunk < BLOCK_CELLS {
            let entry = forward[state][chunk];
            let xy = (entry & 0xff) as usize;
            table[state][xy] = (chunk as u16) | (entry & 0xff00);
            chunk += 1;
        }
        state += 1;
    }
    table
}

/// The state in which to start so that a square of side `2^m` is walked with the classic
/// orientation after padding the index to a whole number of table steps.
///
/// Padding adds leading zero digits; each zero digit keeps the first quadrant but transposes
/// the sub-curve, so an odd number of padding levels is undone by starting transposed.
pub(crate) const fn start_state(m: u32) -> u8 {
    let padded = steps(m) * LEVELS_PER_STEP;
    if (padded - m) % 2 == 1 {
        TRANSPOSE
    } else {
        IDENTITY
    }
}

/// Table steps needed for a square of side `2^m`.
pub(crate) const fn steps(m: u32) -> u32 {
    m.div_ceil(LEVELS_PER_STEP)
}

/// Cell `(x, y)` of curve index `d` on a square of side `2^m` (`d < 4^m`).
#[inline]
pub(crate) fn d2xy(m: u32, d: u64) -> (u32, u32) {
    let (x, y, _) = descend(m, d, steps(m));
    (x, y)
}

/// Processes the top `count` table steps of index `d` (padded to `steps(m)` steps) and returns
/// the coordinates reached, already shifted into place, and the state for the remaining steps.
#[inline]
pub(crate) fn descend(m: u32, d: u64, count: u32) -> (u32, u32, u8) {
    let m = m.min(MAX_SIDE_BITS);
    let total = steps(m);
    let mut state = start_state(m);
    let (mut x, mut y) = (0u32, 0u32);
    let mut step = 0;
    while step < count && step < total {
        let shift = 2 * LEVELS_PER_STEP * (total - 1 - step);
        let chunk = ((d >> shift) & 0xff) as usize;
        let entry = FORWARD[usize::from(state & 7)][chunk];
        x = (x << LEVELS_PER_STEP) | u32::from(entry & 0xf);
        y = (y << LEVELS_PER_STEP) | u32::from((entry >> 4) & 0xf);
        state = (entry >> 8) as u8;
        step += 1;
    }
    let rest = LEVELS_PER_STEP * (total - step);
    // Coordinates were built on the padded square; its extra top bits are zero for any index
    // on the square, and masking keeps an out-of-range index from escaping it.
    let mask = (1u64 << m) - 1;
    let place = |v: u32| -> u32 { ((u64::from(v) << rest) & mask) as u32 };
    (place(x), place(y), state)
}

/// Curve index of cell `(x, y)` on a square of side `2^m` (`x, y < 2^m`).
#[inline]
pub(crate) fn xy2d(m: u32, x: u32, y: u32) -> u64 {
    let m = m.min(MAX_SIDE_BITS);
    let total = steps(m);
    let mut state = start_state(m);
    let mut d = 0u64;
    for step in 0..total {
        let shift = LEVELS_PER_STEP * (total - 1 - step);
        let xb = (u64::from(x) >> shift) & 0xf;
        let yb = (u64::from(y) >> shift) & 0xf;
        let entry = INVERSE[usize::from(state & 7)][(xb | (yb << 4)) as usize];
        d = (d << 8) | u64::from(entry & 0xff);
        state = (entry >> 8) as u8;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wikipedia's bottom-up `d2xy`, the reference the tables must agree with.
    fn reference(side: u64, d: u64) -> (u32, u32) {
        let (mut x, mut y, mut t) = (0u64, 0u64, d);
        let mut s = 1u64;
        while s < side {
            let rx = 1 & (t / 2);
            let ry = 1 & (t ^ rx);
            if ry == 0 {
                if rx == 1 {
                    x = s - 1 - x;
                    y = s - 1 - y;
                }
                std::mem::swap(&mut x, &mut y);
            }
            x += s * rx;
            y += s * ry;
            t /= 4;
            s *= 2;
        }
        (x as u32, y as u32)
    }

    #[test]
    fn tables_match_reference_curve() {
        for m in 0..=9u32 {
            let side = 1u64 << m;
            for d in 0..side * side {
                let got = d2xy(m, d);
                assert_eq!(got, reference(side, d), "m={m} d={d}");
                assert_eq!(xy2d(m, got.0, got.1), d, "m={m} d={d}");
            }
        }
    }

    #[test]
    fn large_squares_match_reference_on_samples() {
        for m in [10u32, 12, 13, 16, 20, 31] {
            let side = 1u64 << m;
            let area = side * side;
            for k in 0..2000u64 {
                let d = (k.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % area;
                let got = d2xy(m, d);
                assert_eq!(got, reference(side, d), "m={m} d={d}");
                assert_eq!(xy2d(m, got.0, got.1), d);
            }
        }
    }

    #[test]
    fn descend_then_block_table_matches_full_lookup() {
        for m in 4..=8u32 {
            let total = steps(m);
            for d in (0..1u64 << (2 * m)).step_by(37) {
                let (ox, oy, state) = descend(m, d, total - 1);
                let entry = FORWARD[usize::from(state)][(d & 0xff) as usize];
                let x = ox + u32::from(entry & 0xf);
                let y = oy + u32::from((entry >> 4) & 0xf);
                assert_eq!((x, y), d2xy(m, d), "m={m} d={d}");
            }
        }
    }
}
