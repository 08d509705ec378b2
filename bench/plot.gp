# plot.gp - the chart of bench/compare.sh: time until every receiver has the file, and bytes on the
# sender's interface / file size, against the loss case, one line per tool. compare.sh writes one
# data file per tool (columns: x, loss case, median seconds, median bytes ratio, runs) and calls
#   gnuplot -e "dir='DIR'; tools='edm-cast udpcast uftp http'; out='x.png'; subtitle='...'" bench/plot.gp
if (!exists("dir")) dir = "."
if (!exists("tools")) tools = "edm-cast udpcast uftp http"
if (!exists("out")) out = "compare.png"
if (!exists("subtitle")) subtitle = ""

set terminal pngcairo size 1400,600 font "sans,11"
set output out
set datafile separator "\t"
set key below horizontal center
set grid ytics mytics
set logscale y
set xlabel "loss toward each receiver (mixed: one receiver 20%, the others 1%)"
set offsets 0.3, 0.3, 0, 0
set pointsize 1.2

set multiplot layout 1,2 title subtitle
set title "time until every receiver has the file (median)"
set ylabel "seconds"
plot for [t in tools] dir."/".t.".dat" using 1:3:xtic(2) with linespoints lw 2 title t
set title "bytes on the sender's interface / file size (median)"
set ylabel "ratio"
plot for [t in tools] dir."/".t.".dat" using 1:4:xtic(2) with linespoints lw 2 title t
unset multiplot
