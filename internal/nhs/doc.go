// Package nhs validates NHS numbers: ten digits whose last is a modulus-11
// check digit. It holds no data and never logs the numbers it sees.
package nhs
