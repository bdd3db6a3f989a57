//! A posting list: the positions in the index of one value's records,
//! ascending.
//!
//! Most lists of a log with many leads are short (a lead seen once or twice
//! in the memory the index covers), and a `Vec<u32>` of one entry costs its
//! 24 bytes plus an allocation of at least 32: with a lead of its own per
//! event, 56 of the 157 bytes the index took per event (2026-12-06). A list
//! of up to [`INLINE`] positions is kept in place instead, in the same 24
//! bytes a `Vec` takes, and moves to the heap when it grows past them.

/// How many positions a list holds without an allocation.
const INLINE: usize = 3;

/// One value's positions, ascending (the index appends in order).
#[derive(Debug, Clone)]
pub(super) enum Postings {
    /// Up to [`INLINE`] positions, the first `len` of `items`.
    Inline {
        len: u8,
        items: [u32; INLINE],
    },
    Heap(Vec<u32>),
}

impl Default for Postings {
    fn default() -> Postings {
        Postings::Inline {
            len: 0,
            items: [0; INLINE],
        }
    }
}

impl Postings {
    pub(super) fn push(&mut self, position: u32) {
        match self {
            Postings::Inline { len, items } if usize::from(*len) < INLINE => {
                items[usize::from(*len)] = position;
                *len += 1;
            }
            Postings::Inline { items, .. } => {
                // Then doubling, as a `Vec` grown from empty would be
                // (4, 8, 16, ...): a long list's spare room is as before.
                let mut list = Vec::with_capacity(INLINE + 1);
                list.extend_from_slice(items);
                list.push(position);
                *self = Postings::Heap(list);
            }
            Postings::Heap(list) => list.push(position),
        }
    }

    pub(super) fn as_slice(&self) -> &[u32] {
        match self {
            Postings::Inline { len, items } => &items[..usize::from(*len)],
            Postings::Heap(list) => list,
        }
    }

    /// Drops the positions below `shift` and moves the rest down by it (a
    /// purge of the index's first `shift` records).
    pub(super) fn shift_down(&mut self, shift: u32) {
        let gone = self.as_slice().partition_point(|&p| p < shift);
        match self {
            Postings::Inline { len, items } => {
                items.copy_within(gone..usize::from(*len), 0);
                *len -= gone as u8;
                for p in &mut items[..usize::from(*len)] {
                    *p -= shift;
                }
            }
            Postings::Heap(list) => {
                list.drain(..gone);
                for p in list.iter_mut() {
                    *p -= shift;
                }
            }
        }
    }

    pub(super) fn clear(&mut self) {
        *self = Postings::default();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_list_takes_no_more_than_a_vec() {
        assert_eq!(size_of::<Postings>(), size_of::<Vec<u32>>());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u32),
        Shift(u32),
        Clear,
    }

    proptest! {
        /// Any sequence of appends, purges and clears leaves the list
        /// holding what a `Vec` would.
        #[test]
        fn a_list_holds_what_a_vec_holds(ops in prop::collection::vec(
            prop_oneof![
                8 => (1u32..4).prop_map(Op::Push),
                2 => (0u32..12).prop_map(Op::Shift),
                1 => Just(Op::Clear),
            ],
            0..60,
        )) {
            let (mut list, mut reference) = (Postings::default(), Vec::<u32>::new());
            // Positions only grow; a step adds to the last one.
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Push(step) => {
                        next += step;
                        list.push(next);
                        reference.push(next);
                    }
                    Op::Shift(shift) => {
                        list.shift_down(shift);
                        reference.retain(|&p| p >= shift);
                        for p in &mut reference {
                            *p -= shift;
                        }
                        next = next.saturating_sub(shift);
                    }
                    Op::Clear => {
                        list.clear();
                        reference.clear();
                    }
                }
                prop_assert_eq!(list.as_slice(), &reference[..]);
            }
        }
    }
}
