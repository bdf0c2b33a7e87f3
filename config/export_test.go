package config

// MaxFileSize lets the external tests build a file just over the limit.
const MaxFileSize = maxFileSize
