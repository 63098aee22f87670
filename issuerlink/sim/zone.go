package sim

import (
	"crypto/subtle"
	"fmt"
	"sync"

	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/upstream"
)

// keepZoneKeys is how many received zone PIN keys the issuer keeps: the newest and the ones
// before it, for PIN blocks already on their way when a change arrived.
const keepZoneKeys = 3

type zoneKeys struct {
	sync.Mutex
	byIndex map[int][]byte
	order   []int // oldest first
}

// zoneKey is the zone PIN key of F53's index: 00 the configured one, else one a key change
// brought (nil when it never came or was dropped).
func (is *Issuer) zoneKey(index int) []byte {
	if index == 0 {
		return is.ZoneKey
	}
	is.zone.Lock()
	defer is.zone.Unlock()
	return is.zone.byIndex[index]
}

// ZoneKeyAt is the zone PIN key of index (00: the configured one), nil when it never came: for
// tests that look for the key in places it must not be.
func (is *Issuer) ZoneKeyAt(index int) []byte { return is.zoneKey(index) }

// keyChange takes a new zone PIN key (0800, F70 101): unwrapped under the zone master key, its
// check value compared with F48's. 30 when F48 is malformed or this issuer has no ZMK, 96 when
// the key does not unwrap or its check value differs; the answer's F48 is the check value found.
func (is *Issuer) keyChange(req *upstream.Message) (code, f48 string) {
	kc, err := upstream.ParseKeyChange(req.Additional)
	if err != nil || is.ZMK == nil {
		return "30", ""
	}
	k, err := keys.UnwrapAES(is.ZMK, kc.Wrapped)
	if err != nil || (len(k) != 16 && len(k) != 24) {
		return "96", ""
	}
	kcv, err := keys.KCV(k)
	if err != nil {
		return "96", ""
	}
	got := fmt.Sprintf("%X", kcv[:3])
	if subtle.ConstantTimeCompare([]byte(got), []byte(kc.KCV)) != 1 {
		return "96", got
	}
	is.zone.Lock()
	defer is.zone.Unlock()
	if is.zone.byIndex == nil {
		is.zone.byIndex = map[int][]byte{}
	}
	if _, ok := is.zone.byIndex[kc.Index]; ok {
		for i, n := range is.zone.order {
			if n == kc.Index {
				is.zone.order = append(is.zone.order[:i], is.zone.order[i+1:]...)
				break
			}
		}
	}
	is.zone.byIndex[kc.Index] = k
	is.zone.order = append(is.zone.order, kc.Index)
	for len(is.zone.order) > keepZoneKeys {
		delete(is.zone.byIndex, is.zone.order[0])
		is.zone.order = is.zone.order[1:]
	}
	return "00", got
}
