package sinks

// Created lists the paths the change wrote that did not exist before it,
// so a caller can tell a deleted file it put back from one it corrected.
func (c *Change) Created() []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, p := range c.prev {
		if !p.existed {
			out = append(out, p.file.Path)
		}
	}
	return out
}
