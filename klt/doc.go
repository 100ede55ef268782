// Package klt exports and imports one task as a KLT file.
package klt
