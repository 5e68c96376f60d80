# Lambda bootstraps. `sam build` runs `make build-<LogicalId>` here (every
# function in template.yaml has Metadata BuildMethod: makefile and
# CodeUri: .) with ARTIFACTS_DIR set; `make bootstraps` builds all five into
# .aws-sam-local/ without SAM. Stripped, -tags lambda.norpc (no RPC
# runtime: provided.al2023 speaks the Runtime API), arm64 like the template.
GOARCH ?= arm64
BUILD = GOOS=linux GOARCH=$(GOARCH) CGO_ENABLED=0 go build -tags lambda.norpc -trimpath -ldflags "-s -w"
ARTIFACTS_DIR ?= .aws-sam-local

build-LoginFunction:
	$(BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/login
build-ScheduleShiftFunction:
	$(BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/scheduleShift
build-CompleteShiftFunction:
	$(BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/completeShift
build-OnShiftCompletedFunction:
	$(BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/onShiftCompleted
build-InvoiceWorkerFunction:
	$(BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/invoiceWorker

bootstraps:
	for f in login scheduleShift completeShift onShiftCompleted invoiceWorker; do \
		$(BUILD) -o $(ARTIFACTS_DIR)/$$f/bootstrap ./functions/$$f || exit 1; done

.PHONY: build-LoginFunction build-ScheduleShiftFunction build-CompleteShiftFunction build-OnShiftCompletedFunction build-InvoiceWorkerFunction bootstraps
