package redispresence

// SetPageRoundHook makes Page call f between its fetches (nil: nothing).
func SetPageRoundHook(f func()) { pageRoundHook = f }
