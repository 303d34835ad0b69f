package admin

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/pushbackd/pushbackd/store"
)

// ErrRefused wraps why Control refused to act on a run as asked (retry a run that did not
// fail, or whose saga changed): the API answers 409 with the message.
var ErrRefused = errors.New("refused")

func (a *API) retry(c echo.Context) error {
	id, err := a.o.Control.Retry(c.Request().Context(), c.Param("id"))
	if err != nil {
		return runActionError(c.Param("id"), err)
	}
	return c.JSON(http.StatusAccepted, map[string]string{"run_id": id, "retry_of": c.Param("id")})
}

// runActionError is the answer to a retry or cancel of run id that failed: 404 for a run
// that is not there (or no run id at all), 409 with the reason when Control refused.
func runActionError(id string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid):
		return &apiError{code: http.StatusNotFound, message: "no run " + id}
	case errors.Is(err, ErrRefused):
		return &apiError{code: http.StatusConflict, message: refusal(err)}
	}
	return err
}

// refusal is err's message without the "refused: " its wrapping put in front.
func refusal(err error) string {
	msg := err.Error()
	if p := ErrRefused.Error() + ": "; len(msg) > len(p) && msg[:len(p)] == p {
		return msg[len(p):]
	}
	return msg
}

// cancel answers 200 when the run is cancelled already (it never started), 202 when a
// worker still has to compensate what it did (GET the run to see it end cancelled).
func (a *API) cancel(c echo.Context) error {
	st, err := a.o.Control.Cancel(c.Request().Context(), c.Param("id"))
	if err != nil {
		return runActionError(c.Param("id"), err)
	}
	code := http.StatusAccepted
	if st == store.StatusCancelled {
		code = http.StatusOK
	}
	return c.JSON(code, map[string]any{"run_id": c.Param("id"), "status": st, "cancel_requested": st != store.StatusCancelled})
}
