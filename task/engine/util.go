package engine

import "sort"

func sortStrings(a []string) { sort.Strings(a) }

func sortKeys(a []dkey) {
	sort.Slice(a, func(i, j int) bool {
		if a[i].task != a[j].task {
			return a[i].task < a[j].task
		}
		return a[i].device < a[j].device
	})
}
