# Reference fits of the theophylline data with R nlme (Pinheiro and Bates 2000), written as CSV
# beside this script. Run from the repository root:
#   Rscript experiments/calibration/r_references/theoph_nlme.R
# Needs Debian's r-base-core and r-cran-nlme.
library(nlme)
here <- "experiments/calibration/r_references"
Th <- groupedData(conc ~ Time | Subject, data = Theoph)
fm_list <- nlsList(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Th)
individual <- coef(fm_list)
individual$Subject <- rownames(individual)
write.csv(individual, file.path(here, "theoph_nlslist.csv"), row.names = FALSE)
fm1 <- nlme(fm_list, method = "ML")
fm3 <- nlme(fm_list, random = pdDiag(list(lKa ~ 1, lCl ~ 1)), method = "ML")
summary_rows <- function(name, fit) {
  fixed <- fixef(fit)
  table <- summary(fit)$tTable
  sds <- as.numeric(VarCorr(fit)[, "StdDev"])
  names(sds) <- rownames(VarCorr(fit))
  rbind(
    data.frame(fit = name, quantity = paste0("fixed.", names(fixed)), value = as.numeric(fixed)),
    data.frame(fit = name, quantity = paste0("se.", rownames(table)), value = table[, "Std.Error"]),
    data.frame(fit = name, quantity = paste0("sd.", names(sds)), value = sds),
    data.frame(fit = name, quantity = "logLik", value = as.numeric(logLik(fit)))
  )
}
write.csv(rbind(summary_rows("fm1", fm1), summary_rows("fm3", fm3)),
          file.path(here, "theoph_nlme_fits.csv"), row.names = FALSE)
random3 <- ranef(fm3)
random3$Subject <- rownames(random3)
write.csv(random3, file.path(here, "theoph_fm3_ranef.csv"), row.names = FALSE)
# fm1's random-effect covariance matrix (pdMatrix is relative to the residual variance)
covariance1 <- pdMatrix(fm1$modelStruct$reStruct[[1]]) * fm1$sigma^2
write.csv(covariance1, file.path(here, "theoph_fm1_covariance.csv"))
cat("R", R.version.string, "nlme", as.character(packageVersion("nlme")), "\n",
    file = file.path(here, "versions.txt"))
