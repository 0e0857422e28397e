package history

import (
	"context"
	"fmt"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
)

// assetWriteTimeout bounds writing a unit's replacement: inventories are
// rare, and the fleet must not wait long on the history.
const assetWriteTimeout = 2 * time.Second

// recordAssets keeps the serials and firmware an inventory changed: the
// device's history says when its unit was replaced or upgraded. A failed
// write is counted and reported like a lost transition.
func (h *History) recordAssets(cs []fleet.AssetChange) {
	ctx, cancel := context.WithTimeout(context.Background(), assetWriteTimeout)
	defer cancel()
	for _, c := range cs {
		if _, err := h.wdb.ExecContext(ctx, `INSERT INTO assets (device, at, field, old, new) VALUES (?, ?, ?, ?, ?)`,
			c.Device, c.At.UnixNano(), c.Field, c.From, c.To); err != nil {
			h.lastReject.Store("asset change not written: " + err.Error())
			h.drop(1, "write_failed")
			h.log.Error("asset change not written", "device", c.Device, "field", c.Field, "err", err)
		}
	}
}

// Assets returns a device's recorded serial and firmware changes, oldest
// first.
func (h *History) Assets(ctx context.Context, device string) ([]fleet.AssetChange, error) {
	rows, err := h.rdb.QueryContext(ctx, `SELECT at, field, old, new FROM assets WHERE device = ? ORDER BY at, rowid`, device)
	if err != nil {
		return nil, fmt.Errorf("history: assets of %s: %w", device, err)
	}
	defer rows.Close()
	var out []fleet.AssetChange
	for rows.Next() {
		var at int64
		c := fleet.AssetChange{Device: device}
		if err := rows.Scan(&at, &c.Field, &c.From, &c.To); err != nil {
			return nil, err
		}
		c.At = time.Unix(0, at).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
