# Times R nlme's fm3 fit (diagonal random effects on lKa and lCl, ML) of a data set with
# columns Subject, Time, conc, Dose, as the benchmark in population_fit.py runs it.
#   Rscript nlme_fm3.R <data.csv> <repetitions> <out.json>
# Needs Debian's r-base-core and r-cran-nlme.
suppressMessages(library(nlme))
args <- commandArgs(trailingOnly = TRUE)
data <- read.csv(args[1])
repetitions <- as.integer(args[2])
data$Subject <- factor(data$Subject)
grouped <- groupedData(conc ~ Time | Subject, data = data)
fit_once <- function() {
  # the start values of nlme's documented Theoph example (Pinheiro and Bates 2000, 8.2)
  nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = grouped,
       fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKa + lCl ~ 1),
       start = c(lKe = -2.5, lKa = 0.5, lCl = -3.2), method = "ML")
}
fit <- fit_once()  # warm-up (loads code paths), not timed
seconds <- numeric(repetitions)
for (i in seq_len(repetitions)) {
  started <- proc.time()[["elapsed"]]
  fit <- fit_once()
  seconds[i] <- proc.time()[["elapsed"]] - started
}
fixed <- fixef(fit)
sds <- as.numeric(VarCorr(fit)[, "StdDev"])
json <- sprintf(paste0('{"seconds": [%s], "median_seconds": %.6f, "repetitions": %d, ',
                       '"lKe": %.10f, "lKa": %.10f, "lCl": %.10f, "sd_lKa": %.10f, ',
                       '"sd_lCl": %.10f, "sd_residual": %.10f, "logLik": %.10f, "R": "%s", ',
                       '"nlme": "%s"}'),
                paste(sprintf("%.6f", seconds), collapse = ", "), median(seconds), repetitions,
                fixed[["lKe"]], fixed[["lKa"]], fixed[["lCl"]],
                sds[1], sds[2], sds[3], as.numeric(logLik(fit)), R.version.string,
                as.character(packageVersion("nlme")))
writeLines(json, args[3])
