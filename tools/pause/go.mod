// The pod sandbox ("pause") binary of the local test cluster (make cluster): no dependencies.
module mxwarden.local/tools/pause

go 1.26.0
