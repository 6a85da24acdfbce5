package console

// The overview's charts are SVG drawn on the server by a template
// (chart in layout.html): no script, nothing to fetch, readable without
// JavaScript, printable, and each chart carries its figures as a table
// for screen readers.

// bar is one row of a horizontal bar chart: shares and denials, stacked.
type bar struct {
	Label            string
	Shares, Denials  int
	Y                int
	ShareW, DenialW  int
	DenialX, LabelsX int
}

// chart is a horizontal stacked bar chart of stats rows.
type chart struct {
	ID, Title string
	Bars      []bar
	Height    int
	Empty     bool
}

const (
	chartLabelW = 200
	chartBarW   = 420
	chartRowH   = 26
)

// newChart lays out the stats rows (audit stats: key, shares, denials),
// at most limit of them, largest first when sorted is false... in the
// order given.
func newChart(id, title string, rows []any, limit int) chart {
	ch := chart{ID: id, Title: title}
	maxTotal := 0
	for _, r := range rows {
		m, _ := r.(map[string]any)
		b := bar{Label: str(m["key"]), Shares: num(m["shares"]), Denials: num(m["denials"])}
		if b.Shares+b.Denials == 0 {
			continue
		}
		maxTotal = max(maxTotal, b.Shares+b.Denials)
		ch.Bars = append(ch.Bars, b)
	}
	if len(ch.Bars) > limit {
		ch.Bars = ch.Bars[len(ch.Bars)-limit:]
	}
	for i := range ch.Bars {
		b := &ch.Bars[i]
		b.Y = i * chartRowH
		b.ShareW = b.Shares * chartBarW / max(maxTotal, 1)
		b.DenialW = b.Denials * chartBarW / max(maxTotal, 1)
		if b.Shares > 0 && b.ShareW == 0 {
			b.ShareW = 1
		}
		if b.Denials > 0 && b.DenialW == 0 {
			b.DenialW = 1
		}
		b.DenialX = chartLabelW + b.ShareW
		b.LabelsX = chartLabelW + b.ShareW + b.DenialW + 6
	}
	ch.Height = len(ch.Bars)*chartRowH + 4
	ch.Empty = len(ch.Bars) == 0
	return ch
}
