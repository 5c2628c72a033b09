// Package e2e holds end-to-end tests that drive the dashboard in a real
// headless Chromium. It is its own module so that the core module does not
// depend on chromedp.
package e2e
