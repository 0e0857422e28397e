// Package coverage is the hub's model of what the cameras are designed to
// see and what they see now: every camera's field of view laid over a
// square grid around a reference point, per cell how many cameras are
// designed to see it and how many of them work, and the totals of each
// district and area of interest. The map's layers, cells and wedges, the
// ledger of coverage lost over a period and the what-if of planned
// cameras are read from it; it follows the fleet's changes (Apply). A city
// has a hundred thousand cameras and several times as many cells, so both
// are small records found through tables of positions (table.go), a cell
// counts its cameras rather than list them, and names stay the fleet's.
package coverage
