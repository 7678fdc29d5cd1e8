package policy

import (
	"iter"
	"maps"
)

// overlay is the members of a published set copy as the difference from
// an older copy (base, never changed again): what CopyOnWrite makes of a
// set whose changed members a batch names, so publishing a pod joining a
// set of 10,000 copies a few members instead of 10,000. added are members
// base lacks, removed members of base; both stay small: past compactAt
// the copy is made whole again, so an overlay's cost per publish is
// bounded by a fraction of the set's size and amortized O(1) per change.
type overlay struct {
	base           *Set // a plain copy: Members authoritative, ov nil
	added, removed map[Member]struct{}
}

// compactAt is the overlay size past which a copy is made whole: 1/32 of
// the base, at least 32 members.
func compactAt(base int) int { return max(32, base/32) }

// Has reports whether m is a member.
func (s *Set) Has(m Member) bool {
	if s.ov == nil {
		_, ok := s.Members[m]
		return ok
	}
	if _, ok := s.ov.added[m]; ok {
		return true
	}
	if _, ok := s.ov.removed[m]; ok {
		return false
	}
	_, ok := s.ov.base.Members[m]
	return ok
}

// Len is the number of members.
func (s *Set) Len() int {
	if s.ov == nil {
		return len(s.Members)
	}
	return len(s.ov.base.Members) + len(s.ov.added) - len(s.ov.removed)
}

// All yields every member once, in no particular order.
func (s *Set) All() iter.Seq[Member] {
	return func(yield func(Member) bool) {
		if s.ov == nil {
			for m := range s.Members {
				if !yield(m) {
					return
				}
			}
			return
		}
		for m := range s.ov.base.Members {
			if _, gone := s.ov.removed[m]; gone {
				continue
			}
			if !yield(m) {
				return
			}
		}
		for m := range s.ov.added {
			if !yield(m) {
				return
			}
		}
	}
}

func (o *overlay) materialize() map[Member]struct{} {
	out := make(map[Member]struct{}, len(o.base.Members)+len(o.added)-len(o.removed))
	for m := range o.base.Members {
		if _, gone := o.removed[m]; !gone {
			out[m] = struct{}{}
		}
	}
	maps.Copy(out, o.added)
	return out
}

// overlaid is the copy of cur (the live set, which moved on from s, a
// published copy, by changes only among hints) as an overlay of s's base:
// O(hints + s's overlay), or a whole copy once the overlay grows past
// compactAt.
func (s *Set) overlaid(cur *Set, hints map[Member]struct{}) *Set {
	base, added, removed := s, map[Member]struct{}{}, map[Member]struct{}{}
	if s.ov != nil {
		base, added, removed = s.ov.base, maps.Clone(s.ov.added), maps.Clone(s.ov.removed)
	}
	for m := range hints {
		_, now := cur.Members[m]
		_, inBase := base.Members[m]
		switch {
		case now && inBase:
			delete(removed, m)
		case now:
			added[m] = struct{}{}
		case inBase:
			removed[m] = struct{}{}
		default:
			delete(added, m)
		}
	}
	if len(added)+len(removed) > compactAt(len(base.Members)) {
		return cur.Clone()
	}
	c := *cur
	c.Members, c.ov = nil, &overlay{base: base, added: added, removed: removed}
	return &c
}
