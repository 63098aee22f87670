package posswitch

// DrainGrace is the listener's drainGrace, for the tests outside the package.
const DrainGrace = drainGrace
