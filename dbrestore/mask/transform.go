package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"math/rand/v2"
	"unicode/utf8"
)

// masker applies rules to values with one HMAC state; it is not safe for concurrent use
// (each stream has its own).
type masker struct {
	mac hash.Hash
	sum [sha256.Size]byte
}

func newMasker(key []byte) *masker { return &masker{mac: hmac.New(sha256.New, key)} }

// digest returns HMAC-SHA256(key, v); the same value gives the same digest in every
// table and every run with the same key, so joins on masked columns still match.
func (m *masker) digest(v []byte) []byte {
	m.mac.Reset()
	m.mac.Write(v)
	return m.mac.Sum(m.sum[:0])
}

// rng returns a generator seeded by v's digest: the fakes of one value are always the same.
func (m *masker) rng(v []byte) *rand.Rand {
	var seed [32]byte
	copy(seed[:], m.digest(v))
	return rand.New(rand.NewChaCha8(seed))
}

// value applies rule to one non-NULL value (decoded), appending the result to dst; null
// reports that the result is NULL.
func (m *masker) value(dst []byte, rule Rule, v []byte) (out []byte, null bool) {
	switch rule.Kind {
	case Keep:
		return append(dst, v...), false
	case Null:
		return dst, true
	case Fixed:
		return append(dst, rule.Value...), false
	case Hash:
		n := min(max(len(v), 16), 64)
		return hex.AppendEncode(dst, m.digest(v))[:len(dst)+n], false
	case Email:
		dst = append(dst, 'u')
		dst = hex.AppendEncode(dst, m.digest(v)[:8])
		return append(dst, "@example.invalid"...), false
	case Name:
		return fakeName(dst, m.rng(v), v), false
	case Phone:
		return fakePhone(dst, m.rng(v), v), false
	case Text:
		return fakeText(dst, m.rng(v), utf8.RuneCount(v)), false
	}
	return append(dst, v...), false
}

// keepRow decides sample's rows: a row is kept when its digest, as a fraction of 2^64,
// is below f.
func (m *masker) keepRow(row []byte, f float64) bool {
	if f >= 1 {
		return true
	}
	x := binary.BigEndian.Uint64(m.digest(row))
	return float64(x) < f*(1<<64)
}

var firstNames = []string{"Ada", "Alan", "Anna", "Ben", "Carla", "Chen", "Dara", "Diego", "Elif", "Emma", "Femi",
	"Grace", "Hana", "Ivan", "Jonas", "Kai", "Lena", "Luis", "Maya", "Mina", "Nora", "Omar", "Paula", "Priya",
	"Quinn", "Rosa", "Sami", "Sofia", "Tariq", "Tess", "Uma", "Vera", "Wei", "Yara", "Zoe", "Aurelio",
	"Beatrix", "Cornelius", "Evangeline", "Maximilian"}

var lastNames = []string{"Abara", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
	"Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov", "Quist", "Rossi", "Silva", "Tanaka",
	"Urban", "Varga", "Weber", "Xu", "Yilmaz", "Zhang", "Brandt", "Novak", "Park", "Schmidt",
	"Fitzgerald", "Montgomery", "Vasquez-Ortega", "Wojciechowski"}

var words = []string{"lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
	"eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim", "ad", "minim",
	"veniam", "quis", "nostrud", "exercitation", "ullamco", "laboris", "nisi", "aliquip", "ex", "ea", "commodo"}

// lengthClass groups lengths: a fake is of the same class as the value it replaces.
func lengthClass(n int) (lo, hi int) {
	switch {
	case n <= 5:
		return 1, 5
	case n <= 10:
		return 6, 10
	case n <= 20:
		return 11, 20
	case n <= 40:
		return 21, 40
	default:
		return 41, n
	}
}

// fakeName appends a plausible name with as many words as v (at most three) and a
// length of v's class.
func fakeName(dst []byte, r *rand.Rand, v []byte) []byte {
	n := 1
	for i := range v {
		if v[i] == ' ' && n < 3 {
			n++
		}
	}
	lo, hi := lengthClass(utf8.RuneCount(v))
	start := len(dst)
	for try := 0; try < 16; try++ { // names that fit the class, when the lists have them
		dst = dst[:start]
		for i := range n {
			if i > 0 {
				dst = append(dst, ' ')
			}
			list := firstNames
			if i == n-1 && n > 1 {
				list = lastNames
			}
			dst = append(dst, list[r.IntN(len(list))]...)
		}
		if l := len(dst) - start; l >= lo && l <= hi {
			return dst
		}
	}
	for len(dst)-start < lo {
		dst = append(dst, '-')
		dst = append(dst, lastNames[r.IntN(len(lastNames))]...)
	}
	if len(dst)-start > hi {
		dst = dst[:start+hi]
	}
	return dst
}

// fakePhone appends v with every digit replaced; signs, spaces and separators stay, and
// so does a leading "+" with the country code's first digit, for plausibility.
func fakePhone(dst []byte, r *rand.Rand, v []byte) []byte {
	keepFirst := len(v) > 1 && v[0] == '+'
	for i, c := range v {
		if c >= '0' && c <= '9' && !(keepFirst && i == 1) {
			c = byte('0' + r.IntN(10))
		}
		dst = append(dst, c)
	}
	return dst
}

// fakeText appends words to exactly n characters.
func fakeText(dst []byte, r *rand.Rand, n int) []byte {
	start := len(dst)
	for len(dst)-start < n {
		if len(dst) > start {
			dst = append(dst, ' ')
		}
		dst = append(dst, words[r.IntN(len(words))]...)
	}
	return dst[:start+n]
}
