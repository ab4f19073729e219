// Make the sidebar buttons in the article header work. Both themes attach their handlers to
// document.querySelector('.primary-toggle') (and '.secondary-toggle'): the first such button,
// which is the one in the site header that Jupyter Book hides. The visible buttons in the
// article header get no handler, so at phone width nothing opened the chapter list. Forward
// their clicks to the wired buttons, which open the sidebar as a dialog on narrow screens and
// collapse it on wide ones.
document.addEventListener('DOMContentLoaded', function () {
    ['.primary-toggle', '.secondary-toggle'].forEach(function (selector) {
        var wired = document.querySelector(selector);
        document.querySelectorAll(selector).forEach(function (button) {
            if (wired && button !== wired) {
                button.addEventListener('click', function (event) {
                    event.preventDefault();
                    wired.click();
                });
            }
        });
    });
});
